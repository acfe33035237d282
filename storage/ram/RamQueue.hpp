// The StorageQueue of a RamStorage: performs each request inside submit() and
// holds its completion until reap() (see RamStorage.hpp).
#pragma once

#include <vector>

#include "storage/CompletionSignal.hpp"
#include "storage/Storage.hpp"

namespace xbb::storage {

class RamQueue final : public StorageQueue {
 public:
  static constexpr unsigned kMaxDepth = 65536;

  // `memory` (properties.size_bytes long) outlives the queue. Throws
  // StorageError for a depth outside 1..kMaxDepth.
  RamQueue(unsigned char* memory, const Properties& properties, unsigned depth);

  int submit(const IoRequest& request) override;
  void flush_submissions() override {}
  int completion_fd() const override { return signal_.fd(); }
  size_t reap(std::span<IoCompletion> out) override;
  bool has_completions() const override { return head_ < done_.size(); }
  unsigned capacity() const override { return depth_; }
  unsigned in_flight() const override { return static_cast<unsigned>(done_.size() - head_); }

 private:
  int32_t execute(const IoRequest& request, uint64_t bytes);
  void zero(uint64_t offset, uint64_t length);

  unsigned char* memory_;
  Properties properties_;
  unsigned depth_;
  CompletionSignal signal_;
  std::vector<IoCompletion> done_;  // [head_, end) await reap()
  size_t head_ = 0;
  bool signalled_ = false;          // one eventfd write per reap cycle
};

}  // namespace xbb::storage
