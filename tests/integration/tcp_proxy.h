// A loopback TCP proxy for fault injection in integration tests: it listens on 127.0.0.1 (an
// ephemeral port, kept for its whole life) and forwards every accepted connection to a target
// (a devcluster node), so a test can make that node look dead (connections refused), black-holed
// (connects and queries hang), or flaky (live connections cut), and bring it back, without
// touching the real server. Point a DSN at it with RedirectDsn().
//
// One thread runs a poll() loop over the listener and every connection pair, with bounded
// per-direction buffers (back-pressure: a side is read only when its buffer has room), so large
// bidirectional streams (COPY both ways) cannot deadlock it. Control calls are applied by that
// thread and return once applied: after Down() returns, new connects are refused and every live
// connection is closed.
//
//   auto proxy = TcpProxy::Start("127.0.0.1", node_port);
//   std::string dsn = proxy->RedirectDsn(node_dsn);
//   proxy->Down();   // node "dies"
//   proxy->Up();     // node "comes back"
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/statusor.h"

namespace shardline::testing {

// Thread-safe: every public method may be called from any thread.
class TcpProxy {
 public:
  // Starts listening on 127.0.0.1:<ephemeral> and forwarding to target_host:target_port
  // (resolved as a numeric IPv4 address; loopback only in tests). Unavailable when the socket
  // cannot be created or bound.
  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(std::string target_host, int target_port);
  // Like Start() for the host and port named in a key=value DSN (defaults 127.0.0.1 / 5432).
  static absl::StatusOr<std::unique_ptr<TcpProxy>> StartFor(std::string_view dsn);
  // Stops the loop, closes every socket. Blocks until the thread has exited.
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  // `dsn` (key=value form) pointed at this proxy (host=127.0.0.1 port=<port> appended: the last
  // value of a repeated keyword wins in libpq).
  std::string RedirectDsn(std::string_view dsn) const;

  // The node dies: close the listener (connects are refused) and cut every live connection.
  void Down();
  // The node comes back: listen again on the same port. Unavailable if the port was taken.
  absl::Status Up();
  // Cut every live connection (both sides closed); keep listening.
  void CutConnections();
  // Black hole: while stalled, accepted connections are held without being forwarded and no
  // byte moves on existing ones (the TCP handshake still succeeds: libpq's connect waits for the
  // server's answer until its timeout). Unstalling resumes forwarding (held connections are then
  // connected to the target).
  void SetStalled(bool stalled);

  // Connections accepted so far (including held ones).
  std::int64_t accepted() const { return accepted_.load(); }
  // Connection pairs currently open.
  int live_connections() const { return live_.load(); }

 private:
  enum class Command { kNone, kDown, kUp, kCut, kStall, kUnstall, kQuit };

  TcpProxy(std::string target_host, int target_port);
  absl::Status Listen();
  // Posts a command to the loop and waits until it was applied; the loop's verdict.
  absl::Status Post(Command c);
  void Run();

  const std::string target_host_;
  const int target_port_;
  int port_ = 0;
  int listen_fd_ = -1;  // owned by the loop thread once it runs
  int wake_fds_[2] = {-1, -1};
  std::thread thread_;

  std::mutex mu_;
  std::condition_variable applied_cv_;
  Command pending_ = Command::kNone;  // guarded by mu_
  std::uint64_t posted_ = 0;          // guarded by mu_
  std::uint64_t applied_ = 0;         // guarded by mu_
  absl::Status verdict_;              // guarded by mu_

  std::atomic<std::int64_t> accepted_{0};
  std::atomic<int> live_{0};
};

}  // namespace shardline::testing
