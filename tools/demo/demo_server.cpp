// demo_server: a small Boost.Asio C++20 coroutine HTTP service with a realistic hang, for showing
// what asyncprobe finds in a process that "just stopped answering".
//
// Server mode (default): demo_server [--pool N]       listens on 127.0.0.1, ephemeral port
//   Prints: READY <pid> port=<p> downstream_port=<d> pool=<N>
// Client mode: demo_server --client PORT [--requests R] [--spacing-ms S] [--wait-ms W]
//   Sends R requests to 127.0.0.1:PORT, one every S ms (every 5th asks for /report), waits W ms
//   more, then prints "sent=R answered=A unanswered=U" and exits.
//
// The service: each request borrows one of N (default 4) "database" connections from a pool,
// runs a query and answers. GET /report also asks the "rates" service for exchange rates, and
// that service (simulated in-process on another loopback port) accepts the request but never
// replies. The bug: build_report() keeps its pooled connection while waiting for the rates
// reply, with no timeout. After N report requests the pool is empty for good, and every later
// request piles up in connection_pool::acquire(), suspended @ pool_acquire_wait.
//
// Every co_await line carries an await marker comment with a unique name, as in tests/fixtures.
#include <unistd.h>

#include <array>
#include <boost/asio.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace std::chrono_literals;

// A named namespace, as a real service would have: the report shows shop::handle_request(...).
namespace shop {

long option(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::strtol(argv[i + 1], nullptr, 10);
  }
  return fallback;
}

// ---------------------------------------------------------------- the database connection pool

struct db_connection {
  int id;
  long queries = 0;
};

class connection_pool;

// A borrowed connection; returns itself to the pool when dropped.
class pooled_connection {
 public:
  pooled_connection(connection_pool* pool, db_connection* conn) : pool_(pool), conn_(conn) {}
  pooled_connection(pooled_connection&& other) noexcept
      : pool_(other.pool_), conn_(std::exchange(other.conn_, nullptr)) {}
  pooled_connection(const pooled_connection&) = delete;
  pooled_connection& operator=(const pooled_connection&) = delete;
  pooled_connection& operator=(pooled_connection&&) = delete;
  ~pooled_connection();
  db_connection& operator*() const { return *conn_; }

 private:
  connection_pool* pool_;
  db_connection* conn_;
};

class connection_pool {
 public:
  connection_pool(asio::any_io_executor executor, int size)
      : idle_(executor, static_cast<std::size_t>(size)) {
    for (int i = 0; i < size; ++i) {
      connections_.push_back(std::make_unique<db_connection>(db_connection{i}));
      idle_.try_send(boost::system::error_code{}, connections_.back().get());
    }
  }

  // Waits until a connection is idle. With the pool drained this never returns.
  awaitable<pooled_connection> acquire() {
    auto next_idle = idle_.async_receive(use_awaitable);
    db_connection* conn = co_await std::move(next_idle);  // @await pool_acquire_wait
    co_return pooled_connection{this, conn};
  }

  void release(db_connection* conn) { idle_.try_send(boost::system::error_code{}, conn); }

 private:
  std::vector<std::unique_ptr<db_connection>> connections_;
  asio::experimental::channel<void(boost::system::error_code, db_connection*)> idle_;
};

pooled_connection::~pooled_connection() {
  if (conn_ != nullptr) pool_->release(conn_);
}

// A query takes a few milliseconds of "database time".
awaitable<std::string> run_query(db_connection& db, std::string sql) {
  asio::steady_timer latency(co_await asio::this_coro::executor, 3ms);  // @await run_query_executor
  co_await latency.async_wait(use_awaitable);                           // @await run_query_wait_db
  ++db.queries;
  co_return "conn " + std::to_string(db.id) + ": " + sql + " -> ok\n";
}

// ---------------------------------------------------------------- the downstream "rates" service

// Asks the rates service over loopback and waits for its answer, without any timeout.
awaitable<std::string> fetch_rates(unsigned short rates_port) {
  tcp::socket socket(co_await asio::this_coro::executor);  // @await fetch_rates_executor
  const tcp::endpoint rates(asio::ip::address_v4::loopback(), rates_port);
  co_await socket.async_connect(rates, use_awaitable);  // @await fetch_rates_connect
  const std::string request = "GET /rates?base=EUR\n";
  auto send = asio::async_write(socket, asio::buffer(request), use_awaitable);
  co_await std::move(send);  // @await fetch_rates_send
  std::string reply;
  auto receive = asio::async_read_until(socket, asio::dynamic_buffer(reply), '\n', use_awaitable);
  co_await std::move(receive);  // @await fetch_rates_wait_reply
  co_return reply;
}

// The stalled dependency: reads whatever it is sent and never answers.
awaitable<void> stalled_rates_connection(tcp::socket socket) {
  std::array<char, 512> buffer{};
  for (;;) {
    auto read = socket.async_read_some(asio::buffer(buffer), use_awaitable);
    co_await std::move(read);  // @await stalled_rates_read
  }
}

awaitable<void> rates_service(tcp::acceptor& acceptor) {
  for (;;) {
    tcp::socket socket = co_await acceptor.async_accept(use_awaitable);  // @await rates_accept
    asio::co_spawn(acceptor.get_executor(), stalled_rates_connection(std::move(socket)),
                   asio::detached);
  }
}

// ---------------------------------------------------------------- the HTTP front end

struct service {
  connection_pool pool;
  unsigned short rates_port;
};

// The bug lives here: the pooled connection is held across the rates call.
awaitable<std::string> build_report(db_connection& db, unsigned short rates_port) {
  auto totals_query = run_query(db, "SELECT currency, sum(amount) FROM orders GROUP BY 1");
  std::string totals = co_await std::move(totals_query);  // @await build_report_query_totals
  std::string rates = co_await fetch_rates(rates_port);   // @await build_report_fetch_rates
  co_return totals + rates;
}

awaitable<std::string> handle_request(service& svc, std::string path) {
  pooled_connection conn = co_await svc.pool.acquire();  // @await handle_request_acquire
  if (path == "/report") {
    auto report = build_report(*conn, svc.rates_port);
    co_return co_await std::move(report);  // @await handle_request_report
  }
  auto lookup = run_query(*conn, "SELECT * FROM users WHERE path = '" + path + "'");
  std::string row = co_await std::move(lookup);  // @await handle_request_query
  co_return row;
}

// One request per connection (HTTP/1.0 style): read the request head, answer, close.
awaitable<void> http_session(tcp::socket socket, service& svc) {
  std::string head;
  auto read_head =
      asio::async_read_until(socket, asio::dynamic_buffer(head), "\r\n\r\n", use_awaitable);
  co_await std::move(read_head);  // @await http_session_read_request
  std::string path = "/";
  const std::size_t space = head.find(' ');
  if (space != std::string::npos)
    path = head.substr(space + 1, head.find(' ', space + 1) - space - 1);

  std::string body = co_await handle_request(svc, path);  // @await http_session_handle
  const std::string response =
      "HTTP/1.0 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  auto write = asio::async_write(socket, asio::buffer(response), use_awaitable);
  co_await std::move(write);  // @await http_session_write_response
}

awaitable<void> http_listener(tcp::acceptor& acceptor, service& svc) {
  for (;;) {
    tcp::socket socket = co_await acceptor.async_accept(use_awaitable);  // @await http_accept
    asio::co_spawn(acceptor.get_executor(), http_session(std::move(socket), svc),
                   // A client that hangs up early is normal; keep serving the others.
                   [](std::exception_ptr) {});
  }
}

// ---------------------------------------------------------------- client mode (the load burst)

struct client_stats {
  int sent = 0;
  int answered = 0;
};

awaitable<void> client_request(unsigned short port, std::string path, client_stats& stats) {
  tcp::socket socket(co_await asio::this_coro::executor);  // @await client_executor
  const tcp::endpoint server(asio::ip::address_v4::loopback(), port);
  co_await socket.async_connect(server, use_awaitable);  // @await client_connect
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  auto send = asio::async_write(socket, asio::buffer(request), use_awaitable);
  co_await std::move(send);  // @await client_send
  ++stats.sent;
  std::string response;
  boost::system::error_code ended;
  auto receive = asio::async_read(socket, asio::dynamic_buffer(response),
                                  asio::redirect_error(use_awaitable, ended));
  co_await std::move(receive);  // @await client_wait_response
  if (response.rfind("HTTP/1.0 200", 0) == 0) ++stats.answered;
}

awaitable<void> client_burst(unsigned short port, int requests, int spacing_ms,
                             client_stats& stats) {
  asio::steady_timer spacing(co_await asio::this_coro::executor);  // @await client_burst_executor
  for (int i = 0; i < requests; ++i) {
    const std::string path = i % 5 == 2 ? "/report" : "/users/" + std::to_string(i);
    asio::co_spawn(spacing.get_executor(), client_request(port, path, stats),
                   [](std::exception_ptr) {});
    spacing.expires_after(std::chrono::milliseconds(spacing_ms));
    co_await spacing.async_wait(use_awaitable);  // @await client_burst_spacing
  }
}

int run_client(int argc, char** argv) {
  const long port = option(argc, argv, "--client", 0);
  const long requests = option(argc, argv, "--requests", 40);
  const long spacing_ms = option(argc, argv, "--spacing-ms", 10);
  const long wait_ms = option(argc, argv, "--wait-ms", 500);
  if (port <= 0 || port > 65535 || requests < 0 || requests > 10000 || spacing_ms < 0 ||
      wait_ms < 0) {
    std::fprintf(stderr, "demo_server: bad client options\n");
    return 2;
  }
  asio::io_context io(1);
  client_stats stats;
  asio::co_spawn(io,
                 client_burst(static_cast<unsigned short>(port), static_cast<int>(requests),
                              static_cast<int>(spacing_ms), stats),
                 asio::detached);
  // Bounded in time: whatever has not been answered by then is counted as unanswered.
  io.run_for(std::chrono::milliseconds(requests * spacing_ms + wait_ms));
  std::printf("sent=%d answered=%d unanswered=%d\n", stats.sent, stats.answered,
              stats.sent - stats.answered);
  return 0;
}

int run_server(int argc, char** argv) {
  const long pool_size = option(argc, argv, "--pool", 4);
  if (pool_size < 1 || pool_size > 1000) {
    std::fprintf(stderr, "demo_server: --pool wants 1..1000\n");
    return 2;
  }
  asio::io_context io(1);
  tcp::acceptor rates_acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  tcp::acceptor http_acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  service svc{connection_pool(io.get_executor(), static_cast<int>(pool_size)),
              rates_acceptor.local_endpoint().port()};

  asio::co_spawn(io, rates_service(rates_acceptor), asio::detached);
  asio::co_spawn(io, http_listener(http_acceptor, svc), asio::detached);

  std::printf("READY %d port=%u downstream_port=%u pool=%ld\n", static_cast<int>(::getpid()),
              http_acceptor.local_endpoint().port(), svc.rates_port, pool_size);
  std::fflush(stdout);
  io.run();
  return 0;
}

}  // namespace shop

int main(int argc, char** argv) {
  try {
    if (shop::option(argc, argv, "--client", 0) != 0) return shop::run_client(argc, argv);
    return shop::run_server(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "demo_server: %s\n", e.what());
    return 1;
  }
}
