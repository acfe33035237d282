// Grants the frontend keeps granted for the life of the connection
// (feature-persistent): each is mapped once, read-write, and I/O is then done
// on the mapping directly. Owned by one worker thread.
#pragma once

#include <cstddef>
#include <unordered_map>

#include "ring/ports/GuestMemory.hpp"

namespace xbb::backend {

class PersistentGrants {
 public:
  PersistentGrants(ports::GrantTable& grants, ports::DomId domid, size_t capacity);
  ~PersistentGrants();
  PersistentGrants(const PersistentGrants&) = delete;
  PersistentGrants& operator=(const PersistentGrants&) = delete;

  // The page mapped for `ref`, mapping it now if there is room. nullptr when
  // the cache is full (the caller falls back to grant copy) or the map failed
  // (`map_failed` set: the request must fail).
  void* lookup_or_map(ports::GrantRef ref, bool& map_failed);
  size_t size() const { return pages_.size(); }
  size_t capacity() const { return capacity_; }

 private:
  ports::GrantTable& grants_;
  ports::DomId domid_;
  size_t capacity_;
  std::unordered_map<ports::GrantRef, void*> pages_;
};

}  // namespace xbb::backend
