// The metrics endpoint over cpp-httplib (see metrics_server.h).
#include "metrics_server.h"

#include <httplib.h>

#include <fmt/format.h>

namespace shardline::loadgen {

MetricsServer::MetricsServer(std::unique_ptr<httplib::Server> server, int port)
    : server_(std::move(server)), port_(port) {
  thread_ = std::thread([this] { server_->listen_after_bind(); });
}

MetricsServer::~MetricsServer() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    int port, std::function<std::string()> text) {
  auto server = std::make_unique<httplib::Server>();
  server->Get("/metrics", [text](const httplib::Request&, httplib::Response& res) {
    res.set_content(text(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("shardline-loadgen: metrics at /metrics\n", "text/plain");
  });
  int bound = port;
  if (port == 0) {
    bound = server->bind_to_any_port("127.0.0.1");
    if (bound <= 0) return absl::UnavailableError("metrics server: cannot bind 127.0.0.1");
  } else if (!server->bind_to_port("127.0.0.1", port)) {
    return absl::UnavailableError(
        fmt::format("metrics server: cannot listen on 127.0.0.1:{} (in use?)", port));
  }
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(server), bound));
}

}  // namespace shardline::loadgen
