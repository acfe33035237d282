// The control socket: a root-only unix stream socket that takes one JSON
// object per line and answers with one JSON object per line. It lives in the
// daemon's control loop; requests are small and answered immediately.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "storage/UniqueFd.hpp"

namespace xbb::backend {

class ControlServer {
 public:
  using Handler = std::function<nlohmann::json(const nlohmann::json&)>;

  // Creates the socket (mode 0600; an existing stale socket is replaced).
  // Throws std::system_error with the path on failure.
  ControlServer(std::string path, Handler handler);
  ~ControlServer();

  int listen_fd() const { return listen_.get(); }
  const std::string& path() const { return path_; }
  // epoll integration: the daemon registers listen_fd() and each accepted
  // connection (reported through `watch`) and calls on_ready(fd).
  void on_ready(int fd, const std::function<void(int fd, bool add)>& watch);

 private:
  void accept_all(const std::function<void(int, bool)>& watch);
  void serve(int fd, const std::function<void(int, bool)>& watch);

  std::string path_;
  Handler handler_;
  storage::UniqueFd listen_;
  std::map<int, std::string> buffers_;  // partial input per connection
};

// Client side, shared by xbbctl and the tests: sends one request, returns the
// answer. Throws std::runtime_error with a readable message on failure.
// A zero timeout waits as long as it takes; otherwise sending and each wait
// for the answer give up after `timeout`.
nlohmann::json control_request(const std::string& socket_path, const nlohmann::json& request,
                               std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

}  // namespace xbb::backend
