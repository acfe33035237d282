#include "backend/daemon/ControlServer.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <spdlog/spdlog.h>

namespace xbb::backend {
namespace {

constexpr size_t kMaxRequestBytes = 64 * 1024;

sockaddr_un socket_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) throw std::runtime_error("control socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      // The client is slow to read a (small) answer; wait for it briefly.
      // poll, not select: a daemon with many disks has descriptors above FD_SETSIZE.
      pollfd pfd{fd, POLLOUT, 0};
      if (::poll(&pfd, 1, 1000) <= 0) return false;
      continue;
    }
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

ControlServer::ControlServer(std::string path, Handler handler)
    : path_(std::move(path)), handler_(std::move(handler)), self_(std::make_shared<ControlServer*>(this)) {
  const auto addr = socket_address(path_);
  listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listen_) throw std::system_error(errno, std::generic_category(), "control socket");
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) throw std::runtime_error("control socket path " + path_ + " exists and is not a socket");
    ::unlink(path_.c_str());
  }
  const mode_t old = ::umask(0077);
  const int rc = ::bind(listen_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0) throw std::system_error(errno, std::generic_category(), "binding control socket " + path_);
  ::chmod(path_.c_str(), 0600);
  if (::listen(listen_.get(), 16) != 0) throw std::system_error(errno, std::generic_category(), "listen " + path_);
}

ControlServer::ControlServer(std::string path, SyncHandler handler)
    : ControlServer(std::move(path), [handler = std::move(handler)](const nlohmann::json& request, Reply reply) {
        reply(handler(request));
      }) {}

ControlServer::~ControlServer() {
  *self_ = nullptr;
  for (auto& [fd, connection] : connections_) ::close(fd);
  ::unlink(path_.c_str());
}

void ControlServer::on_ready(int fd, const std::function<void(int, bool)>& watch) {
  watch_ = watch;
  if (fd == listen_.get()) {
    accept_all(watch);
  } else {
    serve(fd, watch);
  }
}

void ControlServer::accept_all(const std::function<void(int, bool)>& watch) {
  for (;;) {
    int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || (cred.uid != 0 && cred.uid != ::geteuid())) {
      spdlog::warn("control: refusing a connection from uid {}", cred.uid);
      ::close(fd);
      continue;
    }
    connections_[fd] = Connection{++next_serial_, {}, false, false, false};
    watch(fd, true);
  }
}

void ControlServer::drop(int fd) {
  if (watch_) watch_(fd, false);
  connections_.erase(fd);
  ::close(fd);
}

void ControlServer::serve(int fd, const std::function<void(int, bool)>& watch) {
  auto it = connections_.find(fd);
  if (it == connections_.end()) return;
  Connection& connection = it->second;
  char chunk[4096];
  for (;;) {
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n > 0) {
      connection.buffer.append(chunk, static_cast<size_t>(n));
      if (connection.buffer.size() > kMaxRequestBytes) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      connection.eof = true;
    } else {
      connection.closed = errno != EAGAIN;
    }
    break;
  }
  if (connection.buffer.size() > kMaxRequestBytes) connection.closed = true;
  if (connection.closed) {
    // Nobody reads an answer any more; one awaited is dropped when it comes.
    watch(fd, false);
    if (!connection.answering) {
      connections_.erase(it);
      ::close(fd);
    }
    return;
  }
  // The client shut down its side after its requests (printf ... | socat,
  // nc -N): nothing more to read, but every complete line is still answered.
  if (connection.eof) watch(fd, false);
  handle_lines(fd);
}

// Hands the next complete line to the handler, unless a request of this
// connection is still being answered.
// Replies may come from inside a handler (for this connection or another):
// connections with lines to handle queue up here instead of recursing.
void ControlServer::handle_lines(int fd) {
  ready_.push_back(fd);
  if (dispatching_) return;
  dispatching_ = true;
  while (!ready_.empty()) {
    const int next = ready_.front();
    ready_.pop_front();
    handle_lines_of(next);
  }
  dispatching_ = false;
}

void ControlServer::handle_lines_of(int fd) {
  for (;;) {
    auto it = connections_.find(fd);
    if (it == connections_.end()) return;
    Connection& connection = it->second;
    const size_t newline = connection.buffer.find('\n');
    if (connection.eof && !connection.answering && newline == std::string::npos) {
      // Every request of a client that is done sending has been answered.
      connections_.erase(it);
      ::close(fd);
      return;
    }
    if (connection.answering || connection.closed || newline == std::string::npos) return;
    const std::string line = connection.buffer.substr(0, newline);
    connection.buffer.erase(0, newline + 1);
    connection.answering = true;
    const uint64_t serial = connection.serial;
    std::weak_ptr<ControlServer*> self = self_;
    Reply reply = [self, fd, serial](nlohmann::json answer) {
      auto alive = self.lock();
      if (!alive || *alive == nullptr) return;
      ControlServer& server = **alive;
      auto it = server.connections_.find(fd);
      if (it == server.connections_.end() || it->second.serial != serial || !it->second.answering) return;
      it->second.answering = false;
      if (it->second.closed) {
        server.connections_.erase(it);
        ::close(fd);
        return;
      }
      if (!write_all(fd, answer.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n")) {
        server.drop(fd);
        return;
      }
      server.handle_lines(fd);
    };
    nlohmann::json request;
    try {
      request = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      reply({{"ok", false}, {"error", std::string("malformed request: ") + e.what()}});
      continue;
    }
    try {
      handler_(request, reply);
    } catch (const std::exception& e) {
      reply({{"ok", false}, {"error", e.what()}});
    }
  }
}

nlohmann::json control_request(const std::string& socket_path, const nlohmann::json& request,
                               std::chrono::milliseconds timeout) {
  const auto addr = socket_address(socket_path);
  storage::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  if (timeout.count() > 0) {
    const timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error("cannot connect to xbbd at " + socket_path + ": " + std::strerror(errno) +
                             (errno == ENOENT ? " (is xbbd running?)" : ""));
  }
  const std::string line = request.dump() + "\n";
  if (!write_all(fd.get(), line)) throw std::runtime_error("cannot send the request to xbbd");
  std::string answer;
  char chunk[4096];
  while (answer.find('\n') == std::string::npos) {
    ssize_t n = ::recv(fd.get(), chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      throw std::runtime_error("xbbd at " + socket_path + " did not answer within " + std::to_string(timeout.count()) + " ms");
    if (n <= 0) throw std::runtime_error("xbbd closed the control connection without answering");
    answer.append(chunk, static_cast<size_t>(n));
  }
  return nlohmann::json::parse(answer.substr(0, answer.find('\n')));
}

}  // namespace xbb::backend
