// The StorageQueue of a CowOriginStorage (the protocol is described in
// CowOriginStorage.hpp). Owned by one worker thread, like every queue; the
// only cross-thread traffic is the mailbox from the copy-on-write thread, the
// origin's state word, and this queue's acknowledgement of a hold.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <vector>

#include "storage/snapshot/CowOriginMailbox.hpp"
#include "storage/snapshot/CowOriginStorage.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::storage {

class CowOriginQueue final : public StorageQueue {
 public:
  CowOriginQueue(CowOriginStorage& origin, std::unique_ptr<StorageQueue> inner, unsigned depth);
  ~CowOriginQueue() override;

  int submit(const IoRequest& request) override;
  void flush_submissions() override { inner_->flush_submissions(); }
  int completion_fd() const override { return epoll_.get(); }
  size_t reap(std::span<IoCompletion> out) override;
  // Besides finished I/O: a change of the origin's state word (a hold to
  // acknowledge or release) needs a reap() too.
  bool has_completions() const override {
    return ready_head_ < ready_.size() || inner_->has_completions() ||
           origin_.state_.load(std::memory_order_relaxed) != seen_state_;
  }
  unsigned capacity() const override { return depth_; }
  unsigned in_flight() const override { return depth_ - static_cast<unsigned>(free_.size()); }

  // --- called by CowOriginStorage, from the control thread ---
  void wake() const { mailbox_->signal().raise(); }
  uint64_t acked() const { return acked_.load(std::memory_order_acquire); }
  // Nothing in flight and not inside submit()/reap() (see CowOriginFence.hpp
  // for why the control thread may trust this after a heavy fence).
  bool idle() const { return published_.load(std::memory_order_acquire) == 0; }

 private:
  enum class Stage : uint8_t { Free, Issued, Held, Copying, Done };
  struct Slot {
    IoRequest request;  // tag = the caller's
    uint64_t bytes = 0;
    Stage stage = Stage::Free;
    bool modifies = false;
    int32_t result = 0;
  };

  // Brackets every piece of code that may route writes: publishes "busy",
  // fences, then reads the state word; leave() publishes the writes in flight.
  void enter();
  void leave() { published_.store(writes_in_flight_, std::memory_order_release); }
  void sync_state();
  void maybe_acknowledge();
  // Sends a write/discard on its way: to the origin, or to the copier first.
  // Returns 0, or the inner queue's refusal (the slot is then released).
  int route(uint32_t index);
  int issue(uint32_t index);
  void finish(uint32_t index, int32_t result);
  void release(uint32_t index);

  CowOriginStorage& origin_;
  std::unique_ptr<StorageQueue> inner_;
  const unsigned depth_;
  std::shared_ptr<CowOriginMailbox> mailbox_;
  UniqueFd epoll_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
  std::deque<uint32_t> held_;
  std::vector<uint32_t> ready_;
  size_t ready_head_ = 0;
  std::vector<IoCompletion> batch_;   // inner reaps (depth_ long)
  std::vector<IoCompletion> copied_;  // mailbox takes
  std::shared_ptr<const SnapshotList> list_;
  uint64_t seen_state_ = ~uint64_t{0};  // never a real state: the first sync reads the list
  bool holding_ = false;
  bool wrote_ = false;
  unsigned writes_in_flight_ = 0;      // issued or copying, not held
  const bool membarrier_;
  std::atomic<uint64_t> acked_{~uint64_t{0}};
  std::atomic<unsigned> published_{0};  // writes_in_flight_, | kInside while routing
};

}  // namespace xbb::storage
