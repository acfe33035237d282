// A test-only Storage decorator that fails chosen operations with a chosen
// errno (-EIO, -EOPNOTSUPP, -ENODEV, ...) through the ordinary completion
// path, so the engine's mapping of storage errors to blkif statuses can be
// checked. The plan is shared and may change while the device runs.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>

#include "storage/Storage.hpp"

namespace xbb::backendtest {

struct FailurePlan {
  // errno to fail each IoOp with (indexed by storage::IoOp), 0 = pass through.
  std::array<std::atomic<int>, 5> fail_with{};
  std::atomic<uint64_t> failed{0};
  // submit() throws std::bad_alloc: what a host out of memory does to a worker.
  std::atomic<bool> throw_on_submit{false};
  // Each write's submit() sleeps this long on the worker's thread: a write
  // truly in flight below the copy-on-write origin (snapshot quiesce tests).
  std::atomic<int> write_submit_delay_ms{0};
  // Called on the worker's thread at every submit once set (set it once):
  // lets a test act exactly as fast as the worker, e.g. a guest that refills
  // its ring each time the worker takes a request. Published by the flag,
  // since workers may be submitting already.
  void set_on_submit(std::function<void()> fn) {
    on_submit = std::move(fn);
    on_submit_set.store(true, std::memory_order_release);
  }
  std::function<void()> on_submit;
  std::atomic<bool> on_submit_set{false};

  void set(storage::IoOp op, int err) { fail_with[static_cast<size_t>(op)].store(err); }
  void clear() {
    for (auto& f : fail_with) f.store(0);
  }
};

class FailingStorage final : public storage::Storage {
 public:
  FailingStorage(std::unique_ptr<storage::Storage> inner, std::shared_ptr<FailurePlan> plan,
                 std::optional<storage::Properties> properties = std::nullopt)
      : inner_(std::move(inner)), plan_(std::move(plan)), properties_(properties.value_or(inner_->properties())) {}

  const storage::Properties& properties() const override { return properties_; }
  std::string describe() const override { return "failing:" + inner_->describe(); }
  std::unique_ptr<storage::StorageQueue> open_queue(unsigned depth) override;

 private:
  std::unique_ptr<storage::Storage> inner_;
  std::shared_ptr<FailurePlan> plan_;
  storage::Properties properties_;
};

}  // namespace xbb::backendtest
