// A guest process's connection to a SimHypervisor's broker socket. connect()
// hands the guest's memory and grant table memfds to the hypervisor; the
// connection is then the SimDomainLink through which SimGuestEvents publishes
// its ports. When the connection closes (the object is destroyed, or the
// process exits or is killed), the hypervisor destroys the domain.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "tests/sim/guestmem/SimDomainLink.hpp"
#include "tests/sim/guestmem/SimGuestMemory.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::sim {

class SimGuestConnection final : public SimDomainLink {
 public:
  // Throws std::system_error (connect failed, or the hypervisor refused the
  // domain: -EEXIST for an id in use, -EINVAL for unusable memory).
  static std::shared_ptr<SimGuestConnection> connect(const std::string& socket_path,
                                                     const SimGuestMemory& memory);
  static std::shared_ptr<SimGuestConnection> connect(const std::string& socket_path, DomId domid,
                                                     int memory_fd, int grant_table_fd);

  DomId domid() const override { return domid_; }
  int offer_port(EvtchnPort port, DomId remote, int to_remote, int from_remote) override;
  int close_port(EvtchnPort port) override;

 private:
  SimGuestConnection(storage::UniqueFd socket, DomId domid) : socket_(std::move(socket)), domid_(domid) {}

  storage::UniqueFd socket_;
  DomId domid_;
  std::mutex mutex_;  // one request/reply in flight at a time
};

}  // namespace xbb::sim
