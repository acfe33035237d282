// An asymmetric fence (as in userspace RCU and Folly): the frequent side (a
// worker about to route a write) pays only a compiler barrier; the rare side
// (the control thread starting a snapshot quiesce) pays a membarrier(2)
// system call, which makes every thread of the process execute a full memory
// barrier. Together they order "worker: publish busy, then read the state
// word" against "control: set hold, then read the worker's busy flag" (the
// store-load ordering Dekker's algorithm needs), so an idle queue can be
// counted as quiesced without its owner thread waking up.
//
// Without membarrier (old kernel, seccomp), both sides fall back to a
// seq_cst thread fence.
#pragma once

#include <atomic>

namespace xbb::storage {

// Registers the process for expedited membarrier once; true if available.
bool cow_membarrier_available();

// The worker side.
inline void cow_light_fence(bool membarrier) {
  if (membarrier)
    std::atomic_signal_fence(std::memory_order_seq_cst);
  else
    std::atomic_thread_fence(std::memory_order_seq_cst);
}

// The control side.
void cow_heavy_fence(bool membarrier);

}  // namespace xbb::storage
