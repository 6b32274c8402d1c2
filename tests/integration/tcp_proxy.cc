// The fault-injecting loopback TCP proxy. See tcp_proxy.h.
#include "tcp_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace shardline::testing {

namespace {

constexpr std::size_t kBufferBytes = 256 * 1024;  // per direction; reads pause when full

std::string Errno(const char* what) { return fmt::format("{}: {}", what, std::strerror(errno)); }

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

void CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// One proxied connection: client <-> proxy <-> server.
struct Pair {
  int client = -1;
  int server = -1;  // -1 while held (stalled at accept time)
  std::string c2s;  // read from the client, not yet written to the server
  std::string s2c;
  bool client_eof = false;
  bool server_eof = false;
  bool dead = false;
};

// Reads what fits into `buf`; false on EOF or error.
bool ReadInto(int fd, std::string& buf) {
  char chunk[16384];
  while (buf.size() < kBufferBytes) {
    const std::size_t room = std::min(sizeof(chunk), kBufferBytes - buf.size());
    const ssize_t n = ::recv(fd, chunk, room, 0);
    if (n > 0) {
      buf.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;  // 0 = EOF, or a hard error
  }
  return true;
}

// Writes what the socket takes from `buf`; false on error.
bool WriteFrom(int fd, std::string& buf) {
  while (!buf.empty()) {
    const ssize_t n = ::send(fd, buf.data(), buf.size(), MSG_NOSIGNAL);
    if (n > 0) {
      buf.erase(0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(std::string target_host,
                                                          int target_port) {
  std::unique_ptr<TcpProxy> proxy(new TcpProxy(std::move(target_host), target_port));
  in_addr probe{};
  if (::inet_pton(AF_INET, proxy->target_host_.c_str(), &probe) != 1) {
    return absl::InvalidArgumentError(
        fmt::format("tcp proxy: target host {} is not a numeric IPv4 address", proxy->target_host_));
  }
  if (::pipe2(proxy->wake_fds_, O_NONBLOCK | O_CLOEXEC) != 0) {
    return absl::UnavailableError(Errno("tcp proxy: pipe"));
  }
  if (absl::Status s = proxy->Listen(); !s.ok()) return s;
  proxy->thread_ = std::thread([p = proxy.get()] { p->Run(); });
  return proxy;
}

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::StartFor(std::string_view dsn) {
  char* err = nullptr;
  const std::string dsn_str(dsn);
  PQconninfoOption* opts = PQconninfoParse(dsn_str.c_str(), &err);
  if (opts == nullptr) {
    std::string msg = err ? err : "out of memory";
    PQfreemem(err);
    return absl::InvalidArgumentError("tcp proxy: cannot parse the DSN: " + msg);
  }
  std::string host = "127.0.0.1";
  std::string hostaddr;
  int port = 5432;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0') continue;
    const std::string_view key(o->keyword);
    if (key == "host") host = o->val;
    if (key == "hostaddr") hostaddr = o->val;
    if (key == "port") port = std::atoi(o->val);
  }
  PQconninfoFree(opts);
  if (!hostaddr.empty()) host = hostaddr;
  if (host == "localhost") host = "127.0.0.1";
  return Start(std::move(host), port);
}

TcpProxy::TcpProxy(std::string target_host, int target_port)
    : target_host_(std::move(target_host)), target_port_(target_port) {}

TcpProxy::~TcpProxy() {
  if (thread_.joinable()) {
    (void)Post(Command::kQuit);
    thread_.join();
  }
  CloseFd(listen_fd_);
  CloseFd(wake_fds_[0]);
  CloseFd(wake_fds_[1]);
}

std::string TcpProxy::RedirectDsn(std::string_view dsn) const {
  return fmt::format("{} host=127.0.0.1 hostaddr=127.0.0.1 port={}", dsn, port_);
}

void TcpProxy::Down() { (void)Post(Command::kDown); }
absl::Status TcpProxy::Up() { return Post(Command::kUp); }
void TcpProxy::CutConnections() { (void)Post(Command::kCut); }
void TcpProxy::SetStalled(bool stalled) {
  (void)Post(stalled ? Command::kStall : Command::kUnstall);
}

absl::Status TcpProxy::Listen() {
  if (listen_fd_ >= 0) return absl::OkStatus();
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(Errno("tcp proxy: socket"));
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port_));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 128) != 0) {
    absl::Status s = absl::UnavailableError(
        Errno(fmt::format("tcp proxy: listen on 127.0.0.1:{}", port_).c_str()));
    ::close(fd);
    return s;
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  SetNonBlocking(fd);
  listen_fd_ = fd;
  return absl::OkStatus();
}

absl::Status TcpProxy::Post(Command c) {
  std::unique_lock<std::mutex> lock(mu_);
  applied_cv_.wait(lock, [this] { return pending_ == Command::kNone; });
  pending_ = c;
  const std::uint64_t ticket = ++posted_;
  const char byte = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fds_[1], &byte, 1);
  applied_cv_.wait(lock, [this, ticket] { return applied_ >= ticket; });
  return verdict_;
}

void TcpProxy::Run() {
  std::vector<std::unique_ptr<Pair>> pairs;
  bool stalled = false;

  auto connect_target = [this](Pair& p) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(target_port_));
    ::inet_pton(AF_INET, target_host_.c_str(), &addr.sin_addr);
    // Blocking connect: the target is on loopback, so it is accepted or refused at once.
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd);
      return false;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    SetNonBlocking(fd);
    p.server = fd;
    return true;
  };
  auto close_pair = [this](Pair& p) {
    if (p.dead) return;
    CloseFd(p.client);
    CloseFd(p.server);
    p.dead = true;
    live_.fetch_sub(1);
  };
  auto close_all = [&] {
    for (auto& p : pairs) close_pair(*p);
    pairs.clear();
  };

  std::vector<pollfd> fds;
  std::vector<std::pair<Pair*, bool>> owners;  // per pollfd after the fixed ones: (pair, is_client)
  for (;;) {
    fds.clear();
    owners.clear();
    fds.push_back({wake_fds_[0], POLLIN, 0});
    fds.push_back({listen_fd_, static_cast<short>(listen_fd_ >= 0 ? POLLIN : 0), 0});
    if (!stalled) {
      for (auto& p : pairs) {
        if (p->server < 0) continue;
        short ce = 0, se = 0;
        if (!p->client_eof && p->c2s.size() < kBufferBytes) ce |= POLLIN;
        if (!p->s2c.empty()) ce |= POLLOUT;
        if (!p->server_eof && p->s2c.size() < kBufferBytes) se |= POLLIN;
        if (!p->c2s.empty()) se |= POLLOUT;
        fds.push_back({p->client, ce, 0});
        owners.emplace_back(p.get(), true);
        fds.push_back({p->server, se, 0});
        owners.emplace_back(p.get(), false);
      }
    }
    if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) continue;

    if (fds[0].revents & POLLIN) {
      char drain[64];
      while (::read(wake_fds_[0], drain, sizeof(drain)) > 0) {
      }
      std::unique_lock<std::mutex> lock(mu_);
      const Command c = pending_;
      absl::Status verdict;
      bool quit = false;
      lock.unlock();
      switch (c) {
        case Command::kDown:
          CloseFd(listen_fd_);
          close_all();
          break;
        case Command::kUp:
          verdict = Listen();
          break;
        case Command::kCut:
          close_all();
          break;
        case Command::kStall:
          stalled = true;
          break;
        case Command::kUnstall:
          stalled = false;
          for (auto& p : pairs) {
            if (p->server < 0 && !connect_target(*p)) close_pair(*p);
          }
          break;
        case Command::kQuit:
          close_all();
          CloseFd(listen_fd_);
          quit = true;
          break;
        default:
          break;
      }
      lock.lock();
      if (c != Command::kNone) {
        pending_ = Command::kNone;
        verdict_ = verdict;
        applied_ = posted_;
        applied_cv_.notify_all();
      }
      if (quit) return;
      lock.unlock();
      continue;  // the fd set changed: rebuild it
    }

    if (listen_fd_ >= 0 && (fds[1].revents & POLLIN)) {
      for (;;) {
        const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) break;
        accepted_.fetch_add(1);
        live_.fetch_add(1);
        auto p = std::make_unique<Pair>();
        p->client = client;
        const int one = 1;
        ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        SetNonBlocking(client);
        if (!stalled && !connect_target(*p)) {
          close_pair(*p);  // target down: the client sees the connection closed
          continue;
        }
        pairs.push_back(std::move(p));
      }
    }

    for (std::size_t i = 0; i < owners.size(); ++i) {
      const short re = fds[i + 2].revents;
      if (re == 0) continue;
      Pair& p = *owners[i].first;
      if (p.dead) continue;
      const bool is_client = owners[i].second;
      const int fd = is_client ? p.client : p.server;
      std::string& in = is_client ? p.c2s : p.s2c;
      std::string& out = is_client ? p.s2c : p.c2s;
      bool& eof = is_client ? p.client_eof : p.server_eof;
      if ((re & (POLLIN | POLLHUP | POLLERR)) && !eof && !ReadInto(fd, in)) eof = true;
      if ((re & POLLOUT) && !WriteFrom(fd, out)) {
        close_pair(p);
        continue;
      }
      if (re & POLLERR) {
        close_pair(p);
        continue;
      }
    }
    // Forward what was read at once (saves a poll round), and close pairs whose one side
    // ended once what it sent has been delivered.
    for (auto& p : pairs) {
      if (stalled || p->dead || p->server < 0) continue;
      if (!p->c2s.empty() && !WriteFrom(p->server, p->c2s)) close_pair(*p);
      if (!p->dead && !p->s2c.empty() && !WriteFrom(p->client, p->s2c)) close_pair(*p);
      if (!p->dead && ((p->client_eof && p->c2s.empty()) || (p->server_eof && p->s2c.empty()))) {
        close_pair(*p);
      }
    }
    std::erase_if(pairs, [](const std::unique_ptr<Pair>& p) { return p->dead; });
  }
}

}  // namespace shardline::testing
