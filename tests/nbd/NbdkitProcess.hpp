// Starts a real nbdkit on a unix socket for the NBD storage tests, and kills
// it on demand (server death is part of what is tested).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace xbb::storage::test {

// The nbdkit binary on PATH, or "" when it is not installed.
std::string find_nbdkit();

class NbdkitProcess {
 public:
  // Runs `nbdkit --foreground --exit-with-parent --pidfile SOCKET.pid --unix SOCKET
  // ARGS...` and
  // waits (up to 10 s) until it accepts connections (its --pidfile appears). Throws
  // std::runtime_error with nbdkit's fate when it does not come up.
  NbdkitProcess(std::string socket, std::vector<std::string> args);
  ~NbdkitProcess();  // SIGKILL, reaped
  NbdkitProcess(const NbdkitProcess&) = delete;
  NbdkitProcess& operator=(const NbdkitProcess&) = delete;

  void kill();  // SIGKILL now and reap (idempotent); the socket file stays
  const std::string& socket() const { return socket_; }
  std::string uri() const { return "nbd+unix:///?socket=" + socket_; }

 private:
  std::string socket_;
  pid_t pid_ = -1;
};

// A temporary directory (for sockets), removed with its files on destruction.
class SocketDir {
 public:
  SocketDir();
  ~SocketDir();
  std::string path(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace xbb::storage::test
