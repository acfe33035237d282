// The backing store of one snapshot: a self-describing file holding the
// origin's clusters as they were when the snapshot was taken, copied there just
// before the origin overwrote them (NetBSD fss's backing store, made
// persistent). Layout in SnapshotStoreFormat.hpp.
//
// Crash safety rests on the order the copy-on-write thread (CowOriginCopier)
// follows with these calls, per batch of copies:
//   write_cluster() for every cluster -> sync() -> write_map_entry() for every
//   cluster -> sync() -> only then are the origin writes issued.
// So a map entry never points at data that is not durable, and the origin is
// never overwritten before the map entry of its old data is durable. A crash in
// between leaves at worst unreferenced copies at the end of the file.
//
// Only the copy-on-write thread does I/O on an open store (create() and open()
// run on the caller's thread before the store is shared). The map is not kept
// in memory (8 bytes per cluster would be 128 MiB for 1 TiB at 64 KiB); open()
// scans it once and hands back the copied-cluster bitmap.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "storage/snapshot/SnapshotStoreFormat.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::storage {

// Which store operation a fault hook is asked about.
enum class StoreIo : uint8_t { DataWrite, MapWrite, Sync, Read, HeaderWrite };
// Test hook: returns 0 to let the operation run, or a -errno to fail it.
using StoreFaultHook = std::function<int(StoreIo)>;

class SnapshotStore {
 public:
  // Creates `path` (which must not exist) for a snapshot of an origin of
  // `origin_size` bytes, writes the header and an empty map, and makes the new
  // file durable (fsync of the file and its directory). Throws StorageError.
  static std::unique_ptr<SnapshotStore> create(const std::string& path, const std::string& origin_identity,
                                               uint64_t origin_size, uint32_t cluster_size);
  // Opens an existing store read-write, validating the header and every map
  // entry. Throws StorageError saying what is wrong.
  static std::unique_ptr<SnapshotStore> open(const std::string& path);
  // Before an origin copies into it: an OFD lock on the whole store, held
  // while it is open, so two origins (two xbbd processes, or two origin
  // objects) never write one store. create() takes it itself. Throws
  // StorageInUse when another holds it.
  void lock_for_writing() const;

  // Throws StorageError unless this store was taken of an origin with this
  // identity and size.
  void check_origin(const std::string& origin_identity, uint64_t origin_size) const;

  const std::string& path() const { return path_; }
  const SnapshotHeader& header() const { return header_; }
  // The copied-cluster bitmap found by open() (64 clusters per word; empty
  // after create()). Moved out once.
  std::vector<uint64_t> take_copied_bitmap() { return std::move(copied_bitmap_); }
  uint64_t copied_at_open() const { return copied_at_open_; }

  // Appends `length` (<= cluster size) bytes as the copy of `cluster`; returns
  // 0 and its offset in `store_offset`, or -errno.
  int write_cluster(uint64_t cluster, const void* data, size_t length, uint64_t& store_offset);
  int write_map_entry(uint64_t cluster, uint64_t store_offset);
  int sync();
  // Reads `length` bytes at `offset_in_cluster` of the copy of `cluster`,
  // which must be marked copied. Returns 0 or -errno (-EIO for a map entry
  // that does not point at a copy).
  int read_copied(uint64_t cluster, uint64_t offset_in_cluster, void* out, size_t length);
  // Best effort: records the state and reason in the header and syncs it.
  // Thread-safe (the control thread retires deleted snapshots with it).
  int mark_invalid(const std::string& reason);

  void set_fault_hook(StoreFaultHook hook);

 private:
  SnapshotStore(std::string path, UniqueFd fd, SnapshotHeader header);
  int fault(StoreIo io);
  int write_header();

  std::string path_;
  UniqueFd fd_;
  SnapshotHeader header_;
  uint64_t next_free_;
  std::vector<uint64_t> copied_bitmap_;
  uint64_t copied_at_open_ = 0;
  std::mutex header_mutex_;  // mark_invalid() from two threads
  std::mutex hook_mutex_;    // the hook is set from a test thread
  StoreFaultHook hook_;
};

}  // namespace xbb::storage
