// Grants the frontend keeps granted for the life of the connection
// (feature-persistent): each is mapped once, read-write, and I/O is then done
// on the mapping directly. Owned by one worker thread.
//
// At most `capacity` grants are mapped. A frontend may use more (Linux
// blkfront's pool grows with indirect requests); once the cache is full a new
// grant is served by grant copy and the cache is marked overflowed, and the
// worker then purges the least recently used grants, as Linux blkback's
// purge_persistent_gnt does every 100 ms: 5% of the capacity, plus any
// excess, among the grants no request in flight uses. Without that, a cache
// filled early would hold grants the frontend no longer uses, and everything
// else would be copied for the life of the connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include "ring/ports/GuestMemory.hpp"

namespace xbb::backend {

class PersistentGrants {
 public:
  PersistentGrants(ports::GrantTable& grants, ports::DomId domid, size_t capacity);
  ~PersistentGrants();
  PersistentGrants(const PersistentGrants&) = delete;
  PersistentGrants& operator=(const PersistentGrants&) = delete;

  // The page mapped for `ref`, mapping it now if there is room; `now` (any
  // monotonic stamp, the request's consumption time) marks it used. nullptr
  // when the cache is full (the caller falls back to grant copy; the cache
  // is then overflowed()) or the map failed (`map_failed` set: the request
  // must fail).
  void* lookup_or_map(ports::GrantRef ref, uint64_t now, bool& map_failed) {
    map_failed = false;
    if (auto it = pages_.find(ref); it != pages_.end()) {
      it->second.last_used = now;
      return it->second.address;
    }
    return map(ref, now, map_failed);
  }

  // A grant was refused a mapping for want of room since the last purge.
  bool overflowed() const { return overflowed_; }
  // Unmaps up to `count` grants last used before `in_use_since` (no request
  // in flight can use them), least recently used first; clears overflowed().
  // Returns how many it unmapped.
  size_t purge(size_t count, uint64_t in_use_since);
  // How many a purge should take, as Linux: 5% of the capacity, plus the excess.
  size_t purge_count() const;

  size_t size() const { return pages_.size(); }
  size_t capacity() const { return capacity_; }

 private:
  struct Entry {
    void* address = nullptr;
    uint64_t last_used = 0;
  };
  void* map(ports::GrantRef ref, uint64_t now, bool& map_failed);

  ports::GrantTable& grants_;
  ports::DomId domid_;
  size_t capacity_;
  bool overflowed_ = false;
  std::unordered_map<ports::GrantRef, Entry> pages_;
};

}  // namespace xbb::backend
