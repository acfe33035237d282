// Commands from the control thread to one queue worker: stop, and new
// tunables. The control thread posts and writes an eventfd that the worker
// sleeps on; the worker checks one relaxed flag per pass and takes the lock
// only when something was posted, so nothing on the request path locks.
#pragma once

#include <atomic>
#include <mutex>
#include <optional>

#include "backend/engine/Tunables.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::backend {

class WorkerMailbox {
 public:
  WorkerMailbox();  // throws std::system_error when the eventfd cannot be made

  // Control thread (any thread): non-blocking.
  void post_stop();
  void post_tunables(const Tunables& tunables);

  // Worker thread. Readable when something was posted (for epoll).
  int fd() const { return wakeup_.get(); }
  // Something was posted and not yet taken (a cheap look, for busy-polling).
  bool pending() const { return pending_.load(std::memory_order_relaxed); }

  struct Commands {
    bool stop = false;  // a stop was ever posted
    std::optional<Tunables> tunables;
  };
  // What was posted since the last take(); false (cheaply) when nothing was.
  bool take(Commands& out);

 private:
  void wake();

  storage::UniqueFd wakeup_;              // eventfd the worker sleeps on
  std::atomic<bool> pending_{true};       // set before wakeup_ is written; true so the first pass looks
  std::mutex mutex_;
  bool stop_ = false;                     // guarded by mutex_
  std::optional<Tunables> tunables_;      // guarded by mutex_
};

}  // namespace xbb::backend
