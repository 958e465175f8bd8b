#include "userspace/watch/metrics_server.h"

#include <httplib.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace asyncprobe::watch {

bool parse_listen_address(const std::string& text, std::string* host, int* port,
                          std::string* error) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    *error = "--listen wants ADDR:PORT (e.g. 127.0.0.1:9464), got '" + text + "'";
    return false;
  }
  std::string h = text.substr(0, colon);
  const std::string p = text.substr(colon + 1);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h.empty()) h = "127.0.0.1";  // loopback unless told otherwise
  long value = 0;
  bool digits = !p.empty() && p.size() <= 5;
  for (char c : p) digits = digits && c >= '0' && c <= '9';
  if (digits) value = std::strtol(p.c_str(), nullptr, 10);
  if (!digits || value < 1 || value > 65535) {
    *error = "--listen port must be 1..65535, got '" + p + "'";
    return false;
  }
  *host = h;
  *port = static_cast<int>(value);
  return true;
}

struct MetricsServer::Impl {
  const MetricsPage& page;
  httplib::Server server;
  std::thread thread;
  explicit Impl(const MetricsPage& p) : page(p) {}
};

MetricsServer::MetricsServer(const MetricsPage& page) : impl_(std::make_unique<Impl>(page)) {
  const MetricsPage* p = &impl_->page;
  impl_->server.Get("/metrics", [p](const httplib::Request&, httplib::Response& res) {
    res.set_content(p->get(), "text/plain; version=0.0.4; charset=utf-8");
  });
  impl_->server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("asyncprobe watch: metrics at /metrics\n", "text/plain");
  });
}

MetricsServer::~MetricsServer() { stop(); }

bool MetricsServer::bind(const std::string& host, int port, std::string* error) {
  errno = 0;
  if (!impl_->server.bind_to_port(host.c_str(), port)) {
    const int err = errno;
    *error = "cannot listen on " + host + ":" + std::to_string(port) +
             (err != 0 ? std::string(": ") + std::strerror(err) : std::string());
    return false;
  }
  return true;
}

void MetricsServer::start() {
  impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
}

void MetricsServer::stop() {
  if (!impl_->thread.joinable()) return;
  impl_->server.stop();
  impl_->thread.join();
}

}  // namespace asyncprobe::watch
