// Serves a SimStore on a unix socket in the xenstore wire format, so that a
// simulated guest in another process (SimStoreClient) or libxenstore itself
// (XENSTORED_PATH=<socket>) can use the same store as in-process connections.
// One thread polls the listening socket, every client socket and every
// client's watch-event eventfd.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "tests/sim/xenstore/SimStore.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::sim {

class SimStoreServer {
 public:
  // Binds and listens at once (a stale socket file is replaced), so clients
  // may connect before start(); their requests are answered once it runs.
  // That lets a test fork a guest process before any thread exists.
  SimStoreServer(std::shared_ptr<SimStore> store, std::string socket_path);
  ~SimStoreServer();  // stop(), close, unlink the socket
  SimStoreServer(const SimStoreServer&) = delete;
  SimStoreServer& operator=(const SimStoreServer&) = delete;

  void start();
  void stop();
  const std::string& socket_path() const { return socket_path_; }

 private:
  struct Client;
  void run();

  std::shared_ptr<SimStore> store_;
  std::string socket_path_;
  storage::UniqueFd listen_fd_;
  storage::UniqueFd stop_fd_;
  std::thread thread_;
};

}  // namespace xbb::sim
