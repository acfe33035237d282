// One point-in-time snapshot of a CowOriginStorage: its backing store and the
// live state every thread consults (which clusters are copied, whether the
// snapshot is still valid, whether it was deleted).
//
// Threads: the origin's worker threads only call needs_copy() (lock-free
// bitmap reads); the copy-on-write thread (CowOriginCopier) is the only one
// that does store I/O, sets bits and invalidates after an I/O error; the
// control thread reads the accessors and deletes.
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "storage/snapshot/SnapshotStore.hpp"

namespace xbb::storage {

class Snapshot {
 public:
  // Takes over an open store; `canonical_path` is how it is found by path.
  Snapshot(std::unique_ptr<SnapshotStore> store, std::string canonical_path);

  const std::string& id() const { return id_; }  // the store's UUID
  const std::string& store_path() const { return path_; }
  uint32_t cluster_size() const { return cluster_size_; }
  uint64_t origin_size() const { return origin_size_; }
  uint64_t cluster_count() const { return cluster_count_; }
  timespec created() const { return created_; }
  uint64_t copied_clusters() const { return copied_count_.load(std::memory_order_relaxed); }

  // False once a backing-store error invalidated it: reads then fail with -EIO.
  bool valid() const { return valid_.load(std::memory_order_acquire); }
  std::string invalid_reason() const;
  // False once deleted from its origin: it no longer receives copies.
  bool active() const { return active_.load(std::memory_order_acquire); }

  // Worker threads: does writing [offset, offset+length) need a copy first?
  bool needs_copy(uint64_t offset, uint64_t length) const;
  bool is_copied(uint64_t cluster) const {
    return (bits_[cluster / 64].load(std::memory_order_acquire) >> (cluster % 64)) & 1;
  }

  // Tests: fail chosen store operations (called on the copy-on-write thread).
  void set_store_fault_hook(StoreFaultHook hook) { store_->set_fault_hook(std::move(hook)); }

  // --- the copy-on-write thread only ---
  SnapshotStore& store() { return *store_; }
  // After the cluster's map entry is durable (release: a worker that sees the
  // bit may overwrite the origin).
  void mark_copied(uint64_t cluster);
  // Logs, stops all copying into this snapshot, fails its reads, and records
  // the reason in the store header (best effort). Idempotent.
  void invalidate(const std::string& reason);
  // Logs a failed read once, not once per request.
  bool first_failed_read() { return !read_failure_logged_.exchange(true, std::memory_order_relaxed); }

  // --- the origin, under its control lock ---
  void deactivate() { active_.store(false, std::memory_order_release); }

 private:
  std::unique_ptr<SnapshotStore> store_;
  const std::string path_;
  const std::string id_;
  const uint32_t cluster_size_;
  const uint32_t cluster_shift_;
  const uint64_t origin_size_;
  const uint64_t cluster_count_;
  const timespec created_;
  std::unique_ptr<std::atomic<uint64_t>[]> bits_;
  std::atomic<uint64_t> copied_count_{0};
  std::atomic<bool> valid_{true};
  std::atomic<bool> active_{true};
  std::atomic<bool> read_failure_logged_{false};
  mutable std::mutex reason_mutex_;
  std::string invalid_reason_;
};

}  // namespace xbb::storage
