// The control socket: a root-only unix stream socket that takes one JSON
// object per line and answers with one JSON object per line. It lives in the
// daemon's control loop. A request may be answered later (a pause waits for a
// drain, the supervisor waits for a disk's process): the handler gets a reply
// function to call once, on the control thread; a connection's next request
// is read only after its previous one was answered.
#pragma once

#include <chrono>
#include <functional>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "storage/UniqueFd.hpp"

namespace xbb::backend {

class ControlServer {
 public:
  // Answers a request; a no-op when the connection or the server is gone.
  using Reply = std::function<void(nlohmann::json answer)>;
  using Handler = std::function<void(const nlohmann::json& request, Reply reply)>;
  using SyncHandler = std::function<nlohmann::json(const nlohmann::json&)>;

  // Creates the socket (mode 0600; an existing stale socket is replaced: the
  // caller makes sure no other xbbd owns it). Throws std::system_error with
  // the path on failure.
  ControlServer(std::string path, Handler handler);
  // For a loop whose every answer is immediate.
  ControlServer(std::string path, SyncHandler handler);
  ~ControlServer();

  int listen_fd() const { return listen_.get(); }
  const std::string& path() const { return path_; }
  // epoll integration: the daemon registers listen_fd() and each accepted
  // connection (reported through `watch`) and calls on_ready(fd).
  void on_ready(int fd, const std::function<void(int fd, bool add)>& watch);

 private:
  struct Connection {
    uint64_t serial = 0;       // tells a reused fd number from the connection a reply was for
    std::string buffer;        // input not yet handled
    bool answering = false;    // a request of this connection awaits its reply
    bool closed = false;       // the peer is gone; dropped once no reply is awaited
    bool eof = false;          // the peer sent all it will; dropped once its lines are answered
  };
  void accept_all(const std::function<void(int, bool)>& watch);
  void serve(int fd, const std::function<void(int, bool)>& watch);
  void handle_lines(int fd);
  void handle_lines_of(int fd);
  void drop(int fd);

  std::string path_;
  Handler handler_;
  storage::UniqueFd listen_;
  std::map<int, Connection> connections_;
  uint64_t next_serial_ = 0;
  bool dispatching_ = false;              // inside handle_lines
  std::deque<int> ready_;                  // connections whose lines handle_lines still owes a look
  std::function<void(int, bool)> watch_;  // from the latest on_ready
  std::shared_ptr<ControlServer*> self_;  // replies reach the server only while it exists
};

// Client side, shared by xbbctl and the tests: sends one request, returns the
// answer. Throws std::runtime_error with a readable message on failure.
// A zero timeout waits as long as it takes; otherwise sending and each wait
// for the answer give up after `timeout`.
nlohmann::json control_request(const std::string& socket_path, const nlohmann::json& request,
                               std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

}  // namespace xbb::backend
