// Closures handed to a control loop from other threads (workers, storage
// openers, control-command helpers) and run on the control thread. The box
// is shared: a thread that outlives the loop (an open that hangs on a dead
// NBD server, say) may still post, and after close() its closures are
// dropped instead of reaching a loop that is gone.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <mutex>
#include <system_error>
#include <vector>

#include <spdlog/spdlog.h>

#include "storage/UniqueFd.hpp"

namespace xbb::backend {

class PostBox {
 public:
  PostBox() : wakeup_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (!wakeup_) throw std::system_error(errno, std::generic_category(), "eventfd");
  }
  // Readable when something was posted (or wake() called).
  int fd() const { return wakeup_.get(); }

  // Any thread. Dropped (destroyed on the caller's thread) once closed.
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mutex_);
      if (closed_) return;
      posted_.push_back(std::move(fn));
    }
    wake();
  }
  // Any thread, also from a signal handler's thread: makes fd() readable.
  void wake() {
    uint64_t one = 1;
    [[maybe_unused]] auto rc = ::write(wakeup_.get(), &one, sizeof one);
  }
  // Control thread: runs what was posted so far.
  void run() {
    uint64_t count;
    while (::read(wakeup_.get(), &count, sizeof count) > 0) {
    }
    std::vector<std::function<void()>> batch;
    {
      std::lock_guard lock(mutex_);
      batch.swap(posted_);
    }
    for (auto& fn : batch) {
      // One failing closure (a device whose set-up ran out of memory) is
      // logged; the loop and every other closure carry on.
      try {
        fn();
      } catch (const std::exception& e) {
        spdlog::error("xbbd: {}", e.what());
      }
    }
  }
  // No more closures run; those waiting are dropped.
  void close() {
    std::vector<std::function<void()>> dropped;
    std::lock_guard lock(mutex_);
    closed_ = true;
    dropped.swap(posted_);
  }

 private:
  storage::UniqueFd wakeup_;
  std::mutex mutex_;
  std::vector<std::function<void()>> posted_;
  bool closed_ = false;
};

}  // namespace xbb::backend
