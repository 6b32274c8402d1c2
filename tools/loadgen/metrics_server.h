// `--metrics-port P`: serves the router's metrics (Router::MetricsText(), Prometheus text
// format 0.0.4) at http://127.0.0.1:P/metrics while the load runs, for Prometheus (and the
// dashboard in tools/grafana/) to scrape. Loopback only.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace shardline::loadgen {

// An HTTP server on its own thread. Thread-safe: `text` is called from the server's threads
// and must be thread-safe (Router::MetricsText is). Stops and joins in the destructor.
class MetricsServer {
 public:
  // Binds 127.0.0.1:`port` (0 picks a free port) and starts serving GET /metrics (and GET /,
  // a one-line pointer to /metrics). Unavailable naming the port when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      int port, std::function<std::string()> text);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsServer(std::unique_ptr<httplib::Server> server, int port);
  std::unique_ptr<httplib::Server> server_;
  int port_;
  std::thread thread_;
};

}  // namespace shardline::loadgen
