// The simulated hypervisor's table of live domains, shared by the hypervisor
// object, every handle it opened and the broker thread. Handles keep the
// registry alive, so a handle may outlive the SimHypervisor that opened it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "tests/sim/guestmem/SimDomain.hpp"

namespace xbb::sim {

class SimDomainRegistry {
 public:
  explicit SimDomainRegistry(DomId self) : self_(self) {}

  // The domain the backend runs in: grants must be made out to it.
  DomId self() const { return self_; }

  // Throws std::invalid_argument when `domain` has the backend's id or an id
  // that is already live.
  void add(std::shared_ptr<SimDomain> domain);
  // Marks the domain dead and forgets it; fires the gone callback. False when
  // unknown, or when `expected` is given and the live domain is another one
  // (a new domain that reused the id).
  bool remove(DomId id, const SimDomain* expected = nullptr);
  // The live domain with this id, or nullptr.
  std::shared_ptr<SimDomain> find(DomId id) const;
  // Waits until `id` is not live and every gone callback has returned.
  bool wait_gone(DomId id, std::chrono::milliseconds timeout) const;
  // Called (outside the registry lock, on the thread that removed the domain)
  // whenever a domain goes away: the simulated @releaseDomain.
  void set_on_gone(std::function<void(DomId)> callback);

  // Local event channel ports are unique across every handle, as in dom0.
  ports::EvtchnPort next_local_port() { return next_port_.fetch_add(1, std::memory_order_relaxed); }

 private:
  const DomId self_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::unordered_map<DomId, std::shared_ptr<SimDomain>> domains_;
  std::shared_ptr<std::function<void(DomId)>> on_gone_;
  int removals_in_progress_ = 0;  // callbacks still running
  std::atomic<ports::EvtchnPort> next_port_{1};
};

}  // namespace xbb::sim
