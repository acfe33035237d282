#include "backend/engine/PersistentGrants.hpp"

#include <spdlog/spdlog.h>

namespace xbb::backend {

PersistentGrants::PersistentGrants(ports::GrantTable& grants, ports::DomId domid, size_t capacity)
    : grants_(grants), domid_(domid), capacity_(capacity) {
  pages_.reserve(capacity);
}

PersistentGrants::~PersistentGrants() {
  for (auto& [ref, addr] : pages_) {
    if (int rc = grants_.unmap(addr, 1); rc != 0) {
      spdlog::warn("dom{}: unmapping persistent grant {} failed: {}", domid_, ref, rc);
    }
  }
}

void* PersistentGrants::lookup_or_map(ports::GrantRef ref, bool& map_failed) {
  map_failed = false;
  if (auto it = pages_.find(ref); it != pages_.end()) return it->second;
  if (pages_.size() >= capacity_) return nullptr;
  void* addr = grants_.map(domid_, std::span<const ports::GrantRef>(&ref, 1), /*writable=*/true);
  if (addr == nullptr) {
    map_failed = true;
    return nullptr;
  }
  pages_.emplace(ref, addr);
  return addr;
}

}  // namespace xbb::backend
