// The simulated hypervisor's door for guests in other processes: a unix
// socket served by one thread. A guest connects (SimGuestConnection), hands
// over its memfds and then its event channel eventfds (SCM_RIGHTS); when its
// connection ends — the guest exited or was killed — the broker destroys the
// domain, which is how the backend learns that a guest died.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "tests/sim/guestmem/SimDomainRegistry.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::sim {

class SimBroker {
 public:
  // Listens on `socket_path` (a stale socket file there is replaced) and
  // starts serving. Throws std::system_error with the path on failure.
  SimBroker(std::shared_ptr<SimDomainRegistry> registry, std::string socket_path);
  SimBroker(const SimBroker&) = delete;
  SimBroker& operator=(const SimBroker&) = delete;
  // Stops serving, drops every connection (destroying those domains) and
  // removes the socket file.
  ~SimBroker();

  const std::string& socket_path() const { return path_; }

 private:
  struct Client;
  void serve();
  // False when the connection is finished.
  bool handle_request(Client& client);

  std::shared_ptr<SimDomainRegistry> registry_;
  std::string path_;
  storage::UniqueFd listener_;
  storage::UniqueFd stop_;
  std::thread thread_;
};

}  // namespace xbb::sim
