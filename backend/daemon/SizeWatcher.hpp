// Notices when a disk's backing store grows (an image extended with
// `truncate`, a logical volume with `lvextend`), so the guest sees the new
// size without anyone running `xbbctl resize`, as with Linux blkback.
//
// Asking a store its size (fstat, BLKGETSIZE64) can block on a hung NFS
// mount, so it happens on a thread of its own, never on the control thread or
// a queue worker. That thread is never joined: one stuck in a probe must not
// hold up a daemon's exit. It only touches shared state and reaches the
// daemon through its PostBox, which drops closures once the daemon is gone.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "backend/daemon/PostBox.hpp"
#include "storage/Storage.hpp"

namespace xbb::backend {

class SizeWatcher {
 public:
  struct Disk {
    uint64_t instance = 0;                    // Vbd::instance()
    std::weak_ptr<storage::Storage> storage;  // what it serves now
    uint64_t known_bytes = 0;                 // the size the guest was told
  };
  // Control thread: the disks to probe this round.
  using Collect = std::function<std::vector<Disk>()>;
  // Control thread: the store of disk `instance` is now `bytes` (not known_bytes).
  using Seen = std::function<void(uint64_t instance, uint64_t bytes)>;

  // Every `interval`, collects the disks on the control thread (through
  // `post_box`), probes them, and posts `seen` for each whose size changed.
  SizeWatcher(std::shared_ptr<PostBox> post_box, std::chrono::milliseconds interval, Collect collect, Seen seen);
  ~SizeWatcher();  // stops the thread at its next wake-up; never waits for it
  SizeWatcher(const SizeWatcher&) = delete;
  SizeWatcher& operator=(const SizeWatcher&) = delete;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace xbb::backend
