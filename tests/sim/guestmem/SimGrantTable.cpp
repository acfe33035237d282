#include "tests/sim/guestmem/SimGrantTable.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace xbb::sim {

SimGrantTable::SimGrantTable(std::shared_ptr<SimDomainRegistry> registry)
    : registry_(std::move(registry)) {}

SimGrantTable::~SimGrantTable() {
  if (!mappings_.empty())
    spdlog::warn("sim gnttab: handle closed with {} pages still mapped", mapped_pages_);
  for (auto& [address, m] : mappings_) release(address, m);
}

SimDomain* SimGrantTable::live_domain(DomId domid) {
  auto it = domains_.find(domid);
  if (it != domains_.end()) {
    if (it->second->alive()) return it->second.get();
    domains_.erase(it);
  }
  std::shared_ptr<SimDomain> d = registry_->find(domid);
  if (!d) return nullptr;
  return domains_.emplace(domid, std::move(d)).first->second.get();
}

void* SimGrantTable::map(DomId domid, std::span<const GrantRef> refs, bool writable) {
  if (refs.empty()) {
    errno = EINVAL;
    return nullptr;
  }
  SimDomain* domain = live_domain(domid);
  if (!domain) {
    spdlog::debug("sim gnttab: map from domain {}: no such domain", domid);
    errno = ESRCH;
    return nullptr;
  }
  const size_t length = refs.size() * ports::kPageSize;
  // Reserve the whole range first so the pages land side by side.
  void* base = ::mmap(nullptr, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) return nullptr;

  const int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
  size_t pinned = 0;
  int error = 0;
  for (; pinned < refs.size(); ++pinned) {
    uint32_t frame = 0;
    int16_t status = domain->pin(refs[pinned], registry_->self(), writable, &frame);
    if (status != GNTST_okay) {
      spdlog::debug("sim gnttab: map of domain {} ref {} failed (GNTST {})", domid, refs[pinned], status);
      error = EINVAL;
      break;
    }
    void* at = static_cast<uint8_t*>(base) + pinned * ports::kPageSize;
    if (::mmap(at, ports::kPageSize, prot, MAP_SHARED | MAP_FIXED, domain->memory_fd(),
               static_cast<off_t>(size_t{frame} * ports::kPageSize)) == MAP_FAILED) {
      error = errno;
      domain->unpin(refs[pinned], writable);
      break;
    }
  }
  if (error != 0) {
    for (size_t i = 0; i < pinned; ++i) domain->unpin(refs[i], writable);
    ::munmap(base, length);
    errno = error;
    return nullptr;
  }
  mappings_.emplace(base, Mapping{domains_.at(domid), {refs.begin(), refs.end()}, writable});
  mapped_pages_ += refs.size();
  return base;
}

void SimGrantTable::release(void* address, const Mapping& m) {
  ::munmap(address, m.refs.size() * ports::kPageSize);
  for (GrantRef ref : m.refs) m.domain->unpin(ref, m.writable);
}

int SimGrantTable::unmap(void* address, size_t pages) {
  auto it = mappings_.find(address);
  if (it == mappings_.end() || it->second.refs.size() != pages) {
    spdlog::error("sim gnttab: unmap of {} pages at {} that this handle did not map", pages, address);
    return -EINVAL;
  }
  release(address, it->second);
  mapped_pages_ -= pages;
  mappings_.erase(it);
  return 0;
}

int SimGrantTable::copy(std::span<ports::GrantCopySegment> segments) {
  using Direction = ports::GrantCopySegment::Direction;
  for (ports::GrantCopySegment& seg : segments) {
    // Checks in Xen's order: arguments, domain, grant.
    if (size_t{seg.offset} + seg.length > ports::kPageSize) {
      seg.status = GNTST_bad_copy_arg;
      continue;
    }
    if (seg.local == nullptr && seg.length != 0) {
      seg.status = GNTST_general_error;
      continue;
    }
    SimDomain* domain = live_domain(seg.domid);
    if (!domain) {
      seg.status = GNTST_bad_domain;
      continue;
    }
    const bool to_guest = seg.direction == Direction::ToGuest;
    uint32_t frame = 0;
    seg.status = domain->pin(seg.ref, registry_->self(), to_guest, &frame);
    if (seg.status != GNTST_okay) continue;
    uint8_t* guest = domain->frame_address(frame) + seg.offset;
    if (seg.length == 0) {
      // nothing to move; the grant was still checked
    } else if (to_guest) {
      std::memcpy(guest, seg.local, seg.length);
    } else {
      std::memcpy(seg.local, guest, seg.length);
    }
    domain->unpin(seg.ref, to_guest);
  }
  return 0;
}

}  // namespace xbb::sim
