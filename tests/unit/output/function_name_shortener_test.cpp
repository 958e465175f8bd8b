// Shortening of long demangled names for the text report, on names Boost.Asio's coroutines
// really have (read from a snapshot of tests/fixtures/asio_server.cpp) and on the awkward cases.
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
  // Still too long with the templates folded: the parameters go too.
  EXPECT_EQ(output::shorten_function_name(kCoSpawn, templates_folded.size() - 1),
            "boost::asio::detail::co_spawn_entry_point<...>(...)");
  EXPECT_EQ(output::shorten_function_name(kInitiate, 100),
            "boost::asio::async_result<...>::initiate<...>(...)");
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
