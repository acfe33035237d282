#include "backend/engine/WorkerMailbox.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace xbb::backend {

WorkerMailbox::WorkerMailbox() : wakeup_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!wakeup_) throw std::system_error(errno, std::generic_category(), "queue worker: eventfd");
}

void WorkerMailbox::post_stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake();
}

void WorkerMailbox::post_tunables(const Tunables& tunables) {
  {
    std::lock_guard lock(mutex_);
    tunables_ = tunables;
  }
  wake();
}

void WorkerMailbox::wake() {
  pending_.store(true, std::memory_order_release);
  uint64_t one = 1;
  [[maybe_unused]] auto rc = ::write(wakeup_.get(), &one, sizeof one);
}

bool WorkerMailbox::take(Commands& out) {
  // The flag is set before the eventfd is written: clearing it first means a
  // command posted meanwhile sets it again and is seen on the next pass.
  if (!pending_.exchange(false, std::memory_order_acq_rel)) return false;
  uint64_t count;
  while (::read(wakeup_.get(), &count, sizeof count) > 0) {
  }
  std::lock_guard lock(mutex_);
  out.stop = stop_;
  out.tunables = std::move(tunables_);
  tunables_.reset();
  return true;
}

}  // namespace xbb::backend
