// Serves the metrics page over HTTP (cpp-httplib, Debian's libcpp-httplib): GET /metrics with
// Content-Type text/plain; version=0.0.4. Binds in the caller's thread, so a port in use is an
// error at startup, then answers on a thread of its own.
#pragma once

#include <memory>
#include <string>

#include "userspace/watch/metrics.h"

namespace asyncprobe::watch {

// "127.0.0.1:9464", "[::1]:9464", ":9464" (loopback), "0.0.0.0:9464". false with a one-line
// message when the text is not ADDR:PORT with a port in 1..65535.
bool parse_listen_address(const std::string& text, std::string* host, int* port,
                          std::string* error);

class MetricsServer {
 public:
  explicit MetricsServer(const MetricsPage& page);
  ~MetricsServer();  // stops and joins
  // Binds; false with a one-line message (e.g. the port is in use).
  bool bind(const std::string& host, int port, std::string* error);
  // Starts answering on a background thread.
  void start();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace asyncprobe::watch
