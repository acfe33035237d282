// What a disk costs in file descriptors, checked before its queues are set
// up: a host near its descriptor limit refuses that one disk with a reason
// an administrator can act on, instead of failing half-way through a queue
// (and a frontend's choice of queue count cannot push the daemon over).
//
// Per queue (one ring), on Xen: a grant-table handle, an event-channel
// handle, the storage queue's io_uring and its completion eventfd, the
// worker's epoll and wakeup eventfd: 6. The simulated adapters take 11
// (backend_sim_cross_process_test measures it in the daemon's process), an
// NBD queue one more for its connection. Budgeted at 12, so the estimate
// holds for both and errs on the side of refusing a little early.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace xbb::backend {

inline constexpr unsigned kDescriptorsPerQueue = 12;
// Kept free for the daemon itself (control connections, xenstore, openers).
inline constexpr unsigned kDescriptorReserve = 64;

// Descriptors this process has open now.
size_t open_descriptors();
// Nothing when `queues` more queues fit under RLIMIT_NOFILE with the reserve
// left; otherwise why not.
std::optional<std::string> check_descriptor_budget(unsigned queues);

}  // namespace xbb::backend
