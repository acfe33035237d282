// The eventfd behind StorageQueue::completion_fd(): readable while reap() may
// have something to return. Queues raise() it when completions appear and
// clear() it at the start of reap(), re-raising when they leave completions
// behind, so an edge is never lost between the poller and the reaper.
#pragma once

#include "storage/UniqueFd.hpp"

namespace xbb::storage {

class CompletionSignal {
 public:
  CompletionSignal();  // throws StorageError when no eventfd can be created
  int fd() const { return fd_.get(); }
  void raise() const;  // async-signal and thread safe (one write)
  void clear() const;  // non-blocking read that resets the counter

 private:
  UniqueFd fd_;
};

}  // namespace xbb::storage
