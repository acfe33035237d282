#include "storage/snapshot/CowOriginFence.hpp"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

namespace xbb::storage {

bool cow_membarrier_available() {
  static const bool available = [] {
    const long supported = ::syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (supported < 0 || !(supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) ||
        ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0) {
      spdlog::info("cow: membarrier(2) unavailable; writes pay a full fence while snapshots can be taken");
      return false;
    }
    return true;
  }();
  return available;
}

void cow_heavy_fence(bool membarrier) {
  if (membarrier && ::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) return;
  // Only reachable when membarrier() was never available (the worker side then
  // uses thread fences too); a failure after registration cannot happen.
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

}  // namespace xbb::storage
