// The hand-back from the copy-on-write thread to one queue's owner thread:
// finished slot numbers plus the queue's wake-up eventfd. Shared (shared_ptr)
// between the queue and the jobs it handed off, so the copy-on-write thread
// can always post, even to a queue that was destroyed meanwhile.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <span>
#include <vector>

#include "storage/CompletionSignal.hpp"
#include "storage/Storage.hpp"

namespace xbb::storage {

class CowOriginMailbox {
 public:
  // Any thread: hands back `slot` with `result` and wakes the owner.
  void post(uint32_t slot, int32_t result) {
    {
      std::lock_guard lock(mutex_);
      posted_.push_back({slot, result});
      has_posts_.store(true, std::memory_order_release);
    }
    signal_.raise();
  }

  // Any thread: copies `data` into the owner's buffers and posts, unless the
  // owner closed the mailbox (its buffers may be gone).
  void deliver_read(uint32_t slot, std::span<const uint8_t> data, const iovec* iov, unsigned iovcnt) {
    {
      std::lock_guard lock(mutex_);
      if (closed_) return;
      size_t at = 0;
      for (unsigned i = 0; i < iovcnt && at < data.size(); ++i) {
        const size_t n = std::min(iov[i].iov_len, data.size() - at);
        std::memcpy(iov[i].iov_base, data.data() + at, n);
        at += n;
      }
      posted_.push_back({slot, static_cast<int32_t>(data.size())});
      has_posts_.store(true, std::memory_order_release);
    }
    signal_.raise();
  }

  // Owner thread: moves everything posted so far into `out` (appending).
  // Without snapshots nothing is ever posted: one load, no lock. A post
  // that races this check also raises the signal, so it is taken next time.
  void take(std::vector<IoCompletion>& out) {
    if (!has_posts_.load(std::memory_order_acquire)) return;
    std::lock_guard lock(mutex_);
    out.insert(out.end(), posted_.begin(), posted_.end());
    posted_.clear();
    has_posts_.store(false, std::memory_order_relaxed);
  }

  // Owner thread, from its destructor: nothing is delivered any more.
  void close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }

  const CompletionSignal& signal() const { return signal_; }

 private:
  std::mutex mutex_;
  std::vector<IoCompletion> posted_;  // tag = slot
  std::atomic<bool> has_posts_{false};  // !posted_.empty(), readable without the lock
  bool closed_ = false;
  CompletionSignal signal_;
};

}  // namespace xbb::storage
