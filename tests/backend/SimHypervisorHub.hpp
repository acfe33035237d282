// One simulated hypervisor for several backend processes, as Xen is one for
// every dom0 process: per-disk mode runs one xbbd process per disk, and a
// respawned process must find the guest's memory and event channels just as
// the one before it did.
//
// The hub lives in the test's process, next to the guests (it is handed
// their memory and every event channel port they offer). Each xbbd-sim
// process joins it (join_hub) and mirrors the guests' domains and ports into
// a SimHypervisor of its own: a joining process receives everything current
// before join_hub returns, and later changes reach every joined process
// before the guest's call that made them returns, so a backend never reads a
// port from xenstore that its hypervisor does not know yet.
//
// Protocol: a SOCK_SEQPACKET unix socket; the hub sends one HubMessage per
// change (fds attached with SCM_RIGHTS) and waits for each process's reply.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ring/ports/GuestMemory.hpp"
#include "tests/sim/guestmem/SimDomainLink.hpp"
#include "tests/sim/guestmem/SimGuestMemory.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::backendtest {

class SimHypervisorHub {
 public:
  // Listens on `socket_path`. Throws std::system_error.
  explicit SimHypervisorHub(std::string socket_path);
  ~SimHypervisorHub();
  SimHypervisorHub(const SimHypervisorHub&) = delete;
  SimHypervisorHub& operator=(const SimHypervisorHub&) = delete;

  const std::string& socket_path() const { return path_; }
  // Makes the guest's domain known to every process, now and later. The
  // link publishes the guest's event channel ports the same way.
  std::shared_ptr<sim::SimDomainLink> add_domain(const sim::SimGuestMemory& memory);
  // The domain is destroyed (xl destroy) in every process.
  void remove_domain(ports::DomId domid);
  // Processes joined right now.
  size_t processes() const;

 private:
  class Link;
  struct Port {
    ports::DomId remote = 0;
    storage::UniqueFd to_remote, from_remote;
  };
  struct Domain {
    storage::UniqueFd memory, grant_table;
    std::map<ports::EvtchnPort, Port> ports;
  };
  void accept_loop();
  int offer_port(ports::DomId domid, ports::EvtchnPort port, ports::DomId remote, int to_remote, int from_remote);
  int close_port(ports::DomId domid, ports::EvtchnPort port);
  // Sends to every process and waits for each answer; drops those that fail. Caller holds mutex_.
  void broadcast(uint32_t op, ports::DomId domid, uint32_t port, uint32_t remote, std::vector<int> fds);
  // Everything current, then Synced. False when the process failed. Caller holds mutex_.
  bool send_snapshot(int peer);

  std::string path_;
  storage::UniqueFd listener_, stop_;
  mutable std::mutex mutex_;
  std::map<ports::DomId, Domain> domains_;
  std::vector<storage::UniqueFd> peers_;
  std::thread thread_;
};

// The backend side, in an xbbd-sim process: joins the hub at `socket_path`
// and returns a hypervisor mirroring it, once everything current has arrived.
// Throws std::runtime_error when the hub cannot be reached.
std::unique_ptr<ports::Hypervisor> join_hub(const std::string& socket_path);

}  // namespace xbb::backendtest
