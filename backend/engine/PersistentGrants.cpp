#include "backend/engine/PersistentGrants.hpp"

#include <algorithm>
#include <vector>

#include <spdlog/spdlog.h>

namespace xbb::backend {

PersistentGrants::PersistentGrants(ports::GrantTable& grants, ports::DomId domid, size_t capacity)
    : grants_(grants), domid_(domid), capacity_(capacity) {
  pages_.reserve(capacity);
}

PersistentGrants::~PersistentGrants() {
  for (auto& [ref, entry] : pages_) {
    if (int rc = grants_.unmap(entry.address, 1); rc != 0) {
      spdlog::warn("dom{}: unmapping persistent grant {} failed: {}", domid_, ref, rc);
    }
  }
}

void* PersistentGrants::map(ports::GrantRef ref, uint64_t now, bool& map_failed) {
  if (pages_.size() >= capacity_) {
    overflowed_ = true;
    return nullptr;
  }
  void* addr = grants_.map(domid_, std::span<const ports::GrantRef>(&ref, 1), /*writable=*/true);
  if (addr == nullptr) {
    map_failed = true;
    return nullptr;
  }
  pages_.emplace(ref, Entry{addr, now});
  return addr;
}

size_t PersistentGrants::purge_count() const {
  const size_t excess = pages_.size() > capacity_ ? pages_.size() - capacity_ : 0;
  return std::max<size_t>(1, capacity_ * 5 / 100) + excess;
}

size_t PersistentGrants::purge(size_t count, uint64_t in_use_since) {
  overflowed_ = false;
  std::vector<std::pair<uint64_t, ports::GrantRef>> idle;
  idle.reserve(pages_.size());
  for (const auto& [ref, entry] : pages_) {
    if (entry.last_used < in_use_since) idle.emplace_back(entry.last_used, ref);
  }
  count = std::min(count, idle.size());
  std::nth_element(idle.begin(), idle.begin() + static_cast<std::ptrdiff_t>(count), idle.end());
  size_t unmapped = 0;
  for (size_t i = 0; i < count; ++i) {
    auto it = pages_.find(idle[i].second);
    if (int rc = grants_.unmap(it->second.address, 1); rc != 0) {
      // Still mapped: keep it in the cache rather than lose track of it.
      spdlog::warn("dom{}: unmapping persistent grant {} failed: {}", domid_, it->first, rc);
      continue;
    }
    pages_.erase(it);
    ++unmapped;
  }
  return unmapped;
}

}  // namespace xbb::backend
