// A decorator that makes any Storage fail and slow down on purpose, for
// testing the engine and guests against a misbehaving disk (after NetBSD
// rumpblk's RUMP_BLKFAIL).
//
// - Failures: fail_per_10000 of every 10000 requests whose op is selected by
//   op_mask complete with -EIO without reaching the inner storage (a failed
//   write leaves the old data).
// - Replay: queue number q (0, 1, ... in open_queue() order) decides its k-th
//   accepted submit (k = 0, 1, ..., counting every submit() that is not
//   refused with an error) from hash(seed, q, k) alone, so the same seed and
//   the same request sequence fail exactly the same requests.
// - Latency: selected requests complete no earlier than submit time plus a
//   latency drawn (from the same hash) uniformly in [latency_min_us,
//   latency_max_us]. Nothing blocks: due completions are held in a timer queue
//   and a timerfd wakes the poller when the earliest is due.
// - Settings change at runtime with set_settings() from any thread; each
//   submit() reads them once through a lock-free seqlock (FaultSettings.hpp).
// - completion_fd() is an epoll fd over the inner queue's completion fd, the
//   timerfd and an eventfd for injected failures, so it polls like any other.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "storage/fault/FaultSettings.hpp"
#include "storage/Storage.hpp"

namespace xbb::storage {

class FaultInjectionStorage final : public Storage {
 public:
  FaultInjectionStorage(std::unique_ptr<Storage> inner, const FaultSettings& settings);

  void set_settings(const FaultSettings& settings) { settings_.store(settings); }
  FaultSettings settings() const { return settings_.load(); }
  Storage& inner() { return *inner_; }

  const Properties& properties() const override { return inner_->properties(); }
  std::string describe() const override { return "fault:" + inner_->describe(); }
  bool same_data_for_every_open() const override { return inner_->same_data_for_every_open(); }
  std::optional<uint64_t> current_size() const override { return inner_->current_size(); }
  std::unique_ptr<StorageQueue> open_queue(unsigned depth) override;

 private:
  std::unique_ptr<Storage> inner_;
  FaultSettingsCell settings_;
  std::atomic<uint32_t> next_queue_{0};
};

// The decision for the k-th request of queue q (exposed for tests and logs).
struct FaultDecision {
  bool fail = false;
  uint32_t latency_us = 0;
};
FaultDecision decide_fault(const FaultSettings& settings, uint32_t queue, uint64_t k, IoOp op);

}  // namespace xbb::storage
