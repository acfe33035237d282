// Runs BLKDISCARD / BLKSECDISCARD ioctls for one UringQueue.
//
// Why a thread: io_uring in liburing 2.3 has no block discard opcode
// (IORING_OP_URING_CMD discard arrived in Linux 6.12), and fallocate(PUNCH_HOLE)
// on a block device is a different operation: the kernel turns it into
// WRITE_ZEROES without fallback, which many devices lack and which is not what
// sysfs discard_max_bytes advertises. The ioctls block, so they run here,
// never on the worker thread. Guests discard rarely (mkfs, fstrim), so a mutex
// is fine; the worker only pays an atomic load per reap while idle. The thread
// starts lazily on the first discard.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "storage/CompletionSignal.hpp"

namespace xbb::storage {

class BlockDiscardThread {
 public:
  struct Job {
    uint64_t user_data;
    bool secure;
    uint64_t offset;
    uint64_t length;
  };
  struct Done {
    uint64_t user_data;
    int result;  // 0 or -errno
  };

  // `fd` (a block device open for writing) and `signal` outlive this object.
  BlockDiscardThread(int fd, const CompletionSignal& signal);
  ~BlockDiscardThread();  // finishes queued jobs, then joins
  BlockDiscardThread(const BlockDiscardThread&) = delete;
  BlockDiscardThread& operator=(const BlockDiscardThread&) = delete;

  void post(const Job& job);
  bool has_done() const { return has_done_.load(std::memory_order_acquire); }
  // Appends every finished job to `out`.
  void take_done(std::vector<Done>& out);

 private:
  void run();

  const int fd_;
  const CompletionSignal& signal_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;
  std::vector<Done> done_;
  std::atomic<bool> has_done_{false};
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace xbb::storage
