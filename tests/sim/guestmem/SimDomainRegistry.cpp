#include "tests/sim/guestmem/SimDomainRegistry.hpp"

#include <stdexcept>
#include <string>

#include <spdlog/spdlog.h>

namespace xbb::sim {

void SimDomainRegistry::add(std::shared_ptr<SimDomain> domain) {
  DomId id = domain->id();
  if (id >= DOMID_FIRST_RESERVED)
    throw std::invalid_argument("sim hypervisor: domain id " + std::to_string(id) +
                                " is in Xen's reserved range");
  if (id == self_)
    throw std::invalid_argument("sim hypervisor: domain " + std::to_string(id) +
                                " is the backend's own domain");
  {
    std::lock_guard lock(mutex_);
    if (!domains_.emplace(id, std::move(domain)).second)
      throw std::invalid_argument("sim hypervisor: domain " + std::to_string(id) + " already exists");
  }
  spdlog::debug("sim hypervisor: domain {} created", id);
}

bool SimDomainRegistry::remove(DomId id, const SimDomain* expected) {
  std::shared_ptr<std::function<void(DomId)>> callback;
  {
    std::lock_guard lock(mutex_);
    auto it = domains_.find(id);
    if (it == domains_.end() || (expected && it->second.get() != expected)) return false;
    it->second->mark_dead();
    domains_.erase(it);
    callback = on_gone_;
    ++removals_in_progress_;
  }
  spdlog::debug("sim hypervisor: domain {} destroyed", id);
  if (callback && *callback) (*callback)(id);
  {
    std::lock_guard lock(mutex_);
    --removals_in_progress_;
  }
  changed_.notify_all();
  return true;
}

std::shared_ptr<SimDomain> SimDomainRegistry::find(DomId id) const {
  std::lock_guard lock(mutex_);
  auto it = domains_.find(id);
  return it == domains_.end() ? nullptr : it->second;
}

bool SimDomainRegistry::wait_gone(DomId id, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  // Gone means gone and announced: the callback has run too.
  return changed_.wait_for(lock, timeout,
                           [&] { return !domains_.contains(id) && removals_in_progress_ == 0; });
}

void SimDomainRegistry::set_on_gone(std::function<void(DomId)> callback) {
  std::lock_guard lock(mutex_);
  on_gone_ = std::make_shared<std::function<void(DomId)>>(std::move(callback));
}

}  // namespace xbb::sim
