#include "backend/daemon/ControlServer.hpp"

#include <fcntl.h>
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
      fd_set set;
      FD_ZERO(&set);
      FD_SET(fd, &set);
      timeval tv{1, 0};
      if (::select(fd + 1, nullptr, &set, nullptr, &tv) <= 0) return false;
      continue;
    }
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

ControlServer::ControlServer(std::string path, Handler handler) : path_(std::move(path)), handler_(std::move(handler)) {
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

ControlServer::~ControlServer() {
  for (auto& [fd, buffer] : buffers_) ::close(fd);
  ::unlink(path_.c_str());
}

void ControlServer::on_ready(int fd, const std::function<void(int, bool)>& watch) {
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
    buffers_[fd] = {};
    watch(fd, true);
  }
}

void ControlServer::serve(int fd, const std::function<void(int, bool)>& watch) {
  auto it = buffers_.find(fd);
  if (it == buffers_.end()) return;
  std::string& buffer = it->second;
  bool closed = false;
  char chunk[4096];
  for (;;) {
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer.append(chunk, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    closed = n == 0 || errno != EAGAIN;
    break;
  }
  size_t newline;
  while (!closed && (newline = buffer.find('\n')) != std::string::npos) {
    const std::string line = buffer.substr(0, newline);
    buffer.erase(0, newline + 1);
    nlohmann::json answer;
    try {
      answer = handler_(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& e) {
      answer = {{"ok", false}, {"error", std::string("malformed request: ") + e.what()}};
    } catch (const std::exception& e) {
      answer = {{"ok", false}, {"error", e.what()}};
    }
    if (!write_all(fd, answer.dump() + "\n")) closed = true;
  }
  if (buffer.size() > kMaxRequestBytes) closed = true;
  if (closed) {
    watch(fd, false);
    buffers_.erase(fd);
    ::close(fd);
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
