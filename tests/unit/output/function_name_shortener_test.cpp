// Shortening of long demangled names for the text report, on names Boost.Asio's coroutines
// really have (read from a snapshot of tests/fixtures/asio_server.cpp, `nm -C` of Boost 1.81's
// cpp20/coroutines/echo_server example built by g++ 12, and of tests/fixtures/asio_parallel.cpp)
// and on the awkward cases.
#include "userspace/output/function_name_shortener.h"

#include <gtest/gtest.h>

namespace asyncprobe {
namespace {

const std::string kCoSpawn =
    "boost::asio::awaitable<boost::asio::detail::awaitable_thread_entry_point, "
    "boost::asio::any_io_executor> "
    "boost::asio::detail::co_spawn_entry_point<boost::asio::any_io_executor, "
    "boost::asio::detail::awaitable_as_function<void, boost::asio::any_io_executor>, "
    "boost::asio::detail::detached_handler>(boost::asio::awaitable<void, "
    "boost::asio::any_io_executor>*, boost::asio::any_io_executor, "
    "boost::asio::detail::awaitable_as_function<void, boost::asio::any_io_executor>, "
    "boost::asio::detail::detached_handler)";

const std::string kInitiate =
    "boost::asio::awaitable<unsigned long, boost::asio::any_io_executor> "
    "boost::asio::async_result<boost::asio::use_awaitable_t<boost::asio::any_io_executor>, void "
    "(boost::system::error_code, unsigned "
    "long)>::initiate<boost::asio::basic_stream_socket<boost::asio::ip::tcp, "
    "boost::asio::any_io_executor>::initiate_async_receive, boost::asio::mutable_buffers_1, "
    "int>(boost::asio::basic_stream_socket<boost::asio::ip::tcp, "
    "boost::asio::any_io_executor>::initiate_async_receive, "
    "boost::asio::use_awaitable_t<boost::asio::any_io_executor>, boost::asio::mutable_buffers_1, "
    "int)";

// echo_server's write (boost::asio::async_write): its initiate differs from the read's
// (kInitiate) only in its template arguments.
const std::string kInitiateWrite =
    "boost::asio::awaitable<unsigned long, boost::asio::any_io_executor> "
    "boost::asio::async_result<boost::asio::use_awaitable_t<boost::asio::any_io_executor>, void "
    "(boost::system::error_code, unsigned "
    "long)>::initiate<boost::asio::detail::initiate_async_write<boost::asio::basic_stream_socket<"
    "boost::asio::ip::tcp, boost::asio::any_io_executor> >, boost::asio::mutable_buffers_1, "
    "boost::asio::detail::transfer_all_t>(boost::asio::detail::initiate_async_write<boost::asio::"
    "basic_stream_socket<boost::asio::ip::tcp, boost::asio::any_io_executor> >, "
    "boost::asio::use_awaitable_t<boost::asio::any_io_executor>, boost::asio::mutable_buffers_1, "
    "boost::asio::detail::transfer_all_t)";

// `co_await (a() && b())` with awaitable_operators (267 characters), as `nm -C` prints it.
const std::string kAnd =
    "boost::asio::awaitable<void, boost::asio::any_io_executor> "
    "boost::asio::experimental::awaitable_operators::operator&&<boost::asio::any_io_executor>("
    "boost::asio::awaitable<void, boost::asio::any_io_executor>, boost::asio::awaitable<void, "
    "boost::asio::any_io_executor>)";

const std::string kSession =
    "session(boost::asio::basic_stream_socket<boost::asio::ip::tcp, "
    "boost::asio::any_io_executor>, (anonymous namespace)::readiness&)";

TEST(FunctionNameShortener, ShortNamesStayAsTheyAre) {
  EXPECT_EQ(output::shorten_function_name(
                "idle_client(unsigned short, (anonymous namespace)::readiness&)", 100),
            "idle_client(unsigned short, (anonymous namespace)::readiness&)");
  EXPECT_EQ(output::shorten_function_name(kSession, kSession.size()), kSession);
}

TEST(FunctionNameShortener, FoldsTemplateArgumentsBeforeParameters) {
  EXPECT_EQ(output::shorten_function_name(kSession, 100),
            "session(boost::asio::basic_stream_socket<...>, (anonymous namespace)::readiness&)");
  EXPECT_EQ(output::shorten_function_name(kSession, 40), "session(...)");
}

TEST(FunctionNameShortener, DropsTheReturnTypeThenFoldsAsioInitiations) {
  const std::string templates_folded =
      "boost::asio::detail::co_spawn_entry_point<...>(boost::asio::awaitable<...>*, "
      "boost::asio::any_io_executor, boost::asio::detail::awaitable_as_function<...>, "
      "boost::asio::detail::detached_handler)";
  EXPECT_EQ(output::shorten_function_name(kCoSpawn, templates_folded.size()), templates_folded);
  // Still too long with the templates folded: the parameters go, the function's own template
  // arguments stay (a detached_handler entry point is not a parallel_group_op_handler one).
  EXPECT_EQ(output::shorten_function_name(kCoSpawn, templates_folded.size() - 1),
            "boost::asio::detail::co_spawn_entry_point<any_io_executor, "
            "awaitable_as_function<...>, detached_handler>(...)");
  // First and last: which handler the entry point completes to.
  EXPECT_EQ(output::shorten_function_name(kCoSpawn, 90),
            "boost::asio::detail::co_spawn_entry_point<any_io_executor, ..., "
            "detached_handler>(...)");
  EXPECT_EQ(output::shorten_function_name(kCoSpawn, 60),
            "boost::asio::detail::co_spawn_entry_point<...>(...)");
}

TEST(FunctionNameShortener, ReadAndWriteInitiationsStayApart) {
  const std::string read =
      "boost::asio::async_result<...>::initiate<initiate_async_receive, "
      "mutable_buffers_1, int>(...)";
  EXPECT_EQ(output::shorten_function_name(kInitiate, 100), read);
  // All three arguments do not fit in 100: the first, which names the operation, and the last do.
  EXPECT_EQ(output::shorten_function_name(kInitiateWrite, 100),
            "boost::asio::async_result<...>::initiate<initiate_async_write<...>, ..., "
            "transfer_all_t>(...)");
  EXPECT_EQ(output::shorten_function_name(kInitiateWrite, 120),
            "boost::asio::async_result<...>::initiate<initiate_async_write<...>, "
            "mutable_buffers_1, transfer_all_t>(...)");
  EXPECT_EQ(output::shorten_function_name(kInitiate, 80),
            "boost::asio::async_result<...>::initiate<initiate_async_receive, ..., int>(...)");
  EXPECT_EQ(output::shorten_function_name(kInitiate, 75),
            "boost::asio::async_result<...>::initiate<initiate_async_receive, ...>(...)");
  // Too narrow even for that: everything folds, as before.
  EXPECT_EQ(output::shorten_function_name(kInitiate, 50),
            "boost::asio::async_result<...>::initiate<...>(...)");
}

TEST(FunctionNameShortener, ShortensAwaitableOperators) {
  EXPECT_EQ(output::shorten_function_name(kAnd, 100),
            "boost::asio::experimental::awaitable_operators::operator&&<any_io_executor>(...)");
  EXPECT_EQ(output::shorten_function_name(kAnd, 140),
            "boost::asio::experimental::awaitable_operators::operator&&<any_io_executor>("
            "boost::asio::awaitable<...>, boost::asio::awaitable<...>)");
  EXPECT_EQ(output::shorten_function_name("ns::Big<int, long>::operator||<ns::Executor>(int)", 40),
            "ns::Big<...>::operator||<Executor>(int)");
  EXPECT_EQ(output::shorten_function_name("ns::X<int, int, int>::operator<<=(ns::Y<int>)", 40),
            "ns::X<...>::operator<<=(ns::Y<...>)");
}

TEST(FunctionNameShortener, KeepsOperatorsAndConversionOperators) {
  const std::string shift =
      "std::basic_ostream<char, std::char_traits<char> >& "
      "std::operator<< <std::char_traits<char> >(std::basic_ostream<char, std::char_traits<char> "
      ">&, char const*)";
  EXPECT_EQ(output::shorten_function_name(shift, 60),
            "std::operator<< <...>(std::basic_ostream<...>&, char const*)");
  EXPECT_EQ(output::shorten_function_name(
                "ns::Wrapper<int, long, short, char>::operator bool() const", 30),
            "ns::Wrapper<...>::operator bool() const");
  EXPECT_EQ(output::shorten_function_name(
                "ns::Callable<int, long, short>::operator()(int, long) const", 30),
            "ns::Callable<...>::operator()(...) const");
}

TEST(FunctionNameShortener, UnbalancedNamesAreLeftWhole) {
  const std::string broken =
      "ns::f<int, (anonymous namespace)::x(long, int>(char) with a long tail";
  EXPECT_EQ(output::shorten_function_name(broken, 10), broken);
}

}  // namespace
}  // namespace asyncprobe
