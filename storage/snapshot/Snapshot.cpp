#include "storage/snapshot/Snapshot.hpp"

#include <bit>
#include <cstring>

#include <spdlog/spdlog.h>

namespace xbb::storage {

Snapshot::Snapshot(std::unique_ptr<SnapshotStore> store, std::string canonical_path)
    : store_(std::move(store)),
      path_(std::move(canonical_path)),
      id_(store_->header().uuid_text()),
      cluster_size_(store_->header().cluster_size),
      cluster_shift_(static_cast<uint32_t>(std::countr_zero(cluster_size_))),
      origin_size_(store_->header().origin_size),
      cluster_count_(store_->header().cluster_count),
      created_{static_cast<time_t>(store_->header().created_sec), static_cast<long>(store_->header().created_nsec)} {
  const size_t words = static_cast<size_t>((cluster_count_ + 63) / 64);
  bits_ = std::make_unique<std::atomic<uint64_t>[]>(words);
  std::vector<uint64_t> found = store_->take_copied_bitmap();
  for (size_t i = 0; i < words; ++i) bits_[i].store(i < found.size() ? found[i] : 0, std::memory_order_relaxed);
  copied_count_.store(store_->copied_at_open(), std::memory_order_relaxed);
  if (store_->header().state == SnapshotHeader::State::Invalid) {
    valid_.store(false, std::memory_order_relaxed);
    invalid_reason_ = store_->header().invalid_reason;
  }
}

std::string Snapshot::invalid_reason() const {
  std::lock_guard lock(reason_mutex_);
  return invalid_reason_;
}

bool Snapshot::needs_copy(uint64_t offset, uint64_t length) const {
  if (length == 0 || offset >= origin_size_) return false;
  const uint64_t first = offset >> cluster_shift_;
  const uint64_t last = (std::min(offset + length, origin_size_) - 1) >> cluster_shift_;
  for (uint64_t c = first; c <= last; ++c)
    if (!is_copied(c)) return true;
  return false;
}

void Snapshot::mark_copied(uint64_t cluster) {
  const uint64_t bit = uint64_t{1} << (cluster % 64);
  if ((bits_[cluster / 64].fetch_or(bit, std::memory_order_release) & bit) == 0)
    copied_count_.fetch_add(1, std::memory_order_relaxed);
}

void Snapshot::invalidate(const std::string& reason) {
  {
    std::lock_guard lock(reason_mutex_);
    if (!valid_.load(std::memory_order_relaxed)) return;
    invalid_reason_ = reason;
    valid_.store(false, std::memory_order_release);
  }
  spdlog::error("snapshot {} ({}): invalidated: {}; the origin keeps being written, reads of this snapshot now fail",
                id_, path_, reason);
  if (int rc = store_->mark_invalid(reason))
    spdlog::warn("snapshot {} ({}): could not record the invalid state in the store header: {}", id_, path_,
                 std::strerror(-rc));
}

}  // namespace xbb::storage
