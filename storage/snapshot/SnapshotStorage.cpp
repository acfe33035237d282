#include "storage/snapshot/SnapshotStorage.hpp"

#include <cerrno>

#include <fmt/format.h>

#include "storage/snapshot/CowOriginMailbox.hpp"
#include "storage/RequestValidation.hpp"

namespace xbb::storage {
namespace {

// Every read goes to the copier; flushes complete at once. Completions all
// arrive through the mailbox, whose eventfd is the completion fd.
class SnapshotQueue final : public StorageQueue {
 public:
  SnapshotQueue(std::shared_ptr<CowOriginStorage> origin, std::shared_ptr<Snapshot> snapshot,
                const Properties& properties, unsigned depth)
      : origin_(std::move(origin)),
        snapshot_(std::move(snapshot)),
        properties_(properties),
        depth_(depth),
        mailbox_(std::make_shared<CowOriginMailbox>()),
        tags_(depth) {
    if (depth == 0) throw StorageError("snapshot: queue depth must be at least 1");
    for (uint32_t i = depth; i > 0; --i) free_.push_back(i - 1);
  }
  ~SnapshotQueue() override { mailbox_->close(); }  // the copier must not write into freed buffers

  int submit(const IoRequest& request) override {
    if (free_.empty()) return -EAGAIN;
    ValidatedRequest valid;
    if (int err = validate_request(request, properties_, 0, valid)) return err;
    const uint32_t slot = free_.back();
    free_.pop_back();
    tags_[slot] = request.tag;
    if (request.op == IoOp::Read)
      origin_->copier().read_snapshot(mailbox_, slot, snapshot_, request.offset, request.iov, request.iovcnt,
                                      valid.bytes);
    else
      mailbox_->post(slot, 0);  // flush: nothing is ever dirty
    return 0;
  }

  void flush_submissions() override {}
  int completion_fd() const override { return mailbox_->signal().fd(); }
  unsigned capacity() const override { return depth_; }
  unsigned in_flight() const override { return depth_ - static_cast<unsigned>(free_.size()); }

  size_t reap(std::span<IoCompletion> out) override {
    mailbox_->signal().clear();
    mailbox_->take(done_);
    size_t count = 0;
    while (count < out.size() && head_ < done_.size()) {
      const auto slot = static_cast<uint32_t>(done_[head_].tag);
      out[count++] = {tags_[slot], done_[head_].result};
      free_.push_back(slot);
      ++head_;
    }
    if (head_ == done_.size()) {
      done_.clear();
      head_ = 0;
    } else {
      mailbox_->signal().raise();
    }
    return count;
  }

 private:
  std::shared_ptr<CowOriginStorage> origin_;
  std::shared_ptr<Snapshot> snapshot_;
  Properties properties_;
  unsigned depth_;
  std::shared_ptr<CowOriginMailbox> mailbox_;
  std::vector<uint64_t> tags_;
  std::vector<uint32_t> free_;
  std::vector<IoCompletion> done_;
  size_t head_ = 0;
};

}  // namespace

SnapshotStorage::SnapshotStorage(std::shared_ptr<CowOriginStorage> origin, std::shared_ptr<Snapshot> snapshot)
    : origin_(std::move(origin)), snapshot_(std::move(snapshot)) {
  if (!origin_ || !snapshot_) throw StorageError("snapshot: no origin or no snapshot");
  if (origin_->find_snapshot(snapshot_->id()) != snapshot_)
    throw StorageError(fmt::format("snapshot {} is not an active snapshot of '{}'", snapshot_->id(), origin_->describe()));
  const Properties& p = origin_->properties();
  properties_.size_bytes = p.size_bytes;
  properties_.logical_block_size = p.logical_block_size;
  properties_.physical_block_size = p.physical_block_size;
  properties_.read_only = true;
}

std::string SnapshotStorage::describe() const {
  return fmt::format("snapshot:{}@{}", snapshot_->store_path(), origin_->describe());
}

std::unique_ptr<StorageQueue> SnapshotStorage::open_queue(unsigned depth) {
  return std::make_unique<SnapshotQueue>(origin_, snapshot_, properties_, depth);
}

}  // namespace xbb::storage
