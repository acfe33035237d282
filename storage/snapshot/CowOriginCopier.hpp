// The copy-on-write thread of one origin (one per CowOriginStorage, started
// with its first snapshot).
//
// Why a thread with synchronous I/O rather than an asynchronous pipeline inside
// each worker's queue: a copy must be ordered against every queue's writes and
// every snapshot read, and stores need fdatasync ordering. One thread that owns
// all store I/O and its own origin queue makes that ordering a matter of
// program order: no per-cluster locks shared with workers, no "copy in
// progress" states to wait on, and batches of copies from all queues share
// their fdatasyncs. Workers never block: they hand a write over
// (copy_before_write) and issue it when the thread posts it back to their
// CowOriginMailbox. The price is that copies and snapshot reads of one origin
// are serial, which only costs when snapshots exist.
//
// Rules the thread keeps (see CowOriginStorage.hpp for the whole protocol):
// - Per batch and store: write copies -> fdatasync -> write map entries ->
//   fdatasync -> set the copied bits -> post the writes back. A worker issues
//   a write to a cluster only after seeing its bit set (or after this thread
//   posted the write back), so the origin is never overwritten before its old
//   data is durable in every valid snapshot.
// - Two writes to one uncopied cluster, from any queues, are both handed here;
//   the first copies it, the second finds the bit set; both are posted back
//   only after the copy is durable.
// - Snapshot reads run here too. A read that finds a cluster uncopied reads it
//   from the origin; no write to that cluster can reach the origin meanwhile,
//   because such a write must first have its copy made by this same thread.
// - A store error (ENOSPC, EIO...) or an origin read error during a copy
//   invalidates that snapshot; the write is still posted back with success and
//   proceeds: snapshots never fail or hold up the origin.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "storage/snapshot/CowOriginMailbox.hpp"
#include "storage/snapshot/Snapshot.hpp"
#include "storage/Storage.hpp"

namespace xbb::storage {

using SnapshotList = std::vector<std::shared_ptr<Snapshot>>;

class CowOriginCopier {
 public:
  // `origin` is the undecorated origin (its own queue is opened here, used only
  // by the thread); `active` returns the current snapshot list. Throws
  // StorageError if no origin queue can be opened.
  CowOriginCopier(Storage& origin, std::function<std::shared_ptr<const SnapshotList>()> active);
  ~CowOriginCopier();  // finishes queued jobs, then joins
  CowOriginCopier(const CowOriginCopier&) = delete;
  CowOriginCopier& operator=(const CowOriginCopier&) = delete;

  // Copies every uncopied cluster of [offset, offset+length) into every valid
  // snapshot, then posts (slot, 0) to `reply`.
  void copy_before_write(std::shared_ptr<CowOriginMailbox> reply, uint32_t slot, uint64_t offset, uint64_t length);
  // Reads `bytes` of `snapshot` at `offset` into `iov` and posts (slot, bytes)
  // or (slot, -EIO) to `reply`.
  void read_snapshot(std::shared_ptr<CowOriginMailbox> reply, uint32_t slot, std::shared_ptr<Snapshot> snapshot,
                     uint64_t offset, const iovec* iov, unsigned iovcnt, uint64_t bytes);

 private:
  struct Job {
    std::shared_ptr<CowOriginMailbox> reply;
    uint32_t slot = 0;
    uint64_t offset = 0;
    uint64_t length = 0;
    std::shared_ptr<Snapshot> snapshot;  // set: a snapshot read
    const iovec* iov = nullptr;
    unsigned iovcnt = 0;
  };

  void enqueue(Job job);
  void run();
  void copy_batch(const std::vector<Job>& writes);
  void copy_into(Snapshot& snapshot, const std::vector<Job>& writes);
  void serve_read(const Job& read);
  int origin_read(uint64_t offset, void* into, size_t length);

  Storage& origin_;
  const uint64_t origin_size_;
  std::function<std::shared_ptr<const SnapshotList>()> active_;
  std::unique_ptr<StorageQueue> origin_queue_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace xbb::storage
