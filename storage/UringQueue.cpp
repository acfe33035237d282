#include "storage/UringQueue.hpp"

#include <fcntl.h>
#include <linux/falloc.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "storage/RequestValidation.hpp"

namespace xbb::storage {
namespace {

constexpr int kFixedFileIndex = 0;
// -EAGAIN/-EINTR with no progress: how often to retry before failing the request.
constexpr unsigned kMaxRetries = 16;

bool uses_discard_thread(IoOp op, DiscardMethod method) {
  return (op == IoOp::Discard || op == IoOp::SecureDiscard) && method == DiscardMethod::BlockIoctl;
}

}  // namespace

UringQueue::UringQueue(UringQueueConfig config, unsigned depth)
    : config_(std::move(config)), depth_(depth) {
  if (depth == 0 || depth > kMaxDepth)
    throw StorageError(fmt::format("{}: queue depth {} is not between 1 and {}", config_.name, depth, kMaxDepth));
  if (int rc = io_uring_queue_init(depth, &ring_, 0); rc < 0)
    throw StorageError(fmt::format(
        "{}: cannot create an io_uring: {} (is io_uring disabled by sysctl kernel.io_uring_disabled, "
        "or RLIMIT_MEMLOCK too low?)",
        config_.name, std::strerror(-rc)));
  int rc = io_uring_register_files(&ring_, &config_.fd, 1);
  const char* what = "register the storage fd with";
  if (rc == 0) {
    rc = io_uring_register_eventfd(&ring_, signal_.fd());
    what = "register the completion eventfd with";
  }
  if (rc < 0) {
    io_uring_queue_exit(&ring_);
    throw StorageError(fmt::format("{}: cannot {} io_uring: {}", config_.name, what, std::strerror(-rc)));
  }
  slots_.resize(depth);
  free_slots_.reserve(depth);
  for (uint32_t i = depth; i > 0; --i) free_slots_.push_back(i - 1);
}

UringQueue::~UringQueue() {
  discard_thread_.reset();  // runs the queued ioctls to the end, then joins
  while (ring_ops_ > 0) {
    io_uring_submit(&ring_);
    io_uring_cqe* cqe = nullptr;
    const int rc = io_uring_wait_cqe(&ring_, &cqe);
    if (rc == -EINTR) continue;
    if (rc < 0) {
      spdlog::error("{}: abandoning {} in-flight requests at queue teardown: {}", config_.name, ring_ops_,
                    std::strerror(-rc));
      break;
    }
    const auto index = static_cast<uint32_t>(io_uring_cqe_get_data64(cqe));
    const int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    IoCompletion ignored;
    if (index < depth_) on_cqe(index, res, ignored);
  }
  io_uring_queue_exit(&ring_);
}

int UringQueue::submit(const IoRequest& request) {
  ValidatedRequest valid;
  if (int err = validate_request(request, config_.properties, config_.buffer_alignment, valid)) return err;
  if ((request.op == IoOp::Discard || request.op == IoOp::SecureDiscard) &&
      config_.discard == DiscardMethod::None)
    return -EOPNOTSUPP;
  if (in_flight_ >= depth_) return -EAGAIN;

  const uint32_t index = free_slots_.back();
  Slot& slot = slots_[index];
  slot.tag = request.tag;
  slot.op = request.op;
  slot.offset = request.offset;
  slot.bytes = valid.bytes;
  slot.done = 0;
  slot.iov = request.iov;
  slot.iovcnt = request.iovcnt;
  slot.retries = 0;
  slot.via_thread = uses_discard_thread(request.op, config_.discard);

  if (slot.via_thread) {
    discard_thread().post({index, request.op == IoOp::SecureDiscard, request.offset, valid.bytes});
  } else {
    if (!prepare(index)) return -EAGAIN;
    ++ring_ops_;
  }
  free_slots_.pop_back();
  ++in_flight_;
  return 0;
}

void UringQueue::flush_submissions() {
  if (io_uring_sq_ready(&ring_) == 0) return;
  const int rc = io_uring_submit(&ring_);
  if (rc < 0) {
    // The SQEs stay queued; reap() retries, and raising the signal makes sure
    // the worker comes back to call it.
    spdlog::warn("{}: io_uring submit failed ({}); will retry", config_.name, std::strerror(-rc));
    submit_failed_ = true;
    signal_.raise();
  }
}

size_t UringQueue::reap(std::span<IoCompletion> out) {
  signal_.clear();  // before looking, so a completion arriving later re-arms it
  size_t n = 0;
  while (n < out.size()) {
    io_uring_cqe* cqe = nullptr;
    if (io_uring_peek_cqe(&ring_, &cqe) != 0 || cqe == nullptr) break;
    const auto index = static_cast<uint32_t>(io_uring_cqe_get_data64(cqe));
    const int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    if (index >= depth_) {
      spdlog::error("{}: io_uring returned unknown user_data {}", config_.name, index);
      continue;
    }
    if (on_cqe(index, res, out[n])) ++n;
  }
  if (discard_thread_) {
    if (discard_done_head_ == discard_done_.size() && discard_thread_->has_done()) {
      discard_done_.clear();
      discard_done_head_ = 0;
      discard_thread_->take_done(discard_done_);
    }
    while (n < out.size() && discard_done_head_ < discard_done_.size()) {
      const auto& done = discard_done_[discard_done_head_++];
      out[n++] = finish(static_cast<uint32_t>(done.user_data), done.result);
    }
  }
  if (resubmit_pending_ || submit_failed_) {
    resubmit_pending_ = submit_failed_ = false;
    flush_submissions();
  }
  const bool more = io_uring_cq_ready(&ring_) > 0 || discard_done_head_ < discard_done_.size() ||
                    (discard_thread_ && discard_thread_->has_done());
  if (more) signal_.raise();
  return n;
}

io_uring_sqe* UringQueue::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    // Cannot happen while in-flight <= depth <= SQ size, but never trust that.
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

bool UringQueue::prepare(uint32_t index) {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return false;
  const Slot& slot = slots_[index];
  switch (slot.op) {
    case IoOp::Read:
      io_uring_prep_readv(sqe, kFixedFileIndex, slot.iov, slot.iovcnt, slot.offset);
      break;
    case IoOp::Write:
      io_uring_prep_writev(sqe, kFixedFileIndex, slot.iov, slot.iovcnt, slot.offset);
      break;
    case IoOp::Flush:
      io_uring_prep_fsync(sqe, kFixedFileIndex, IORING_FSYNC_DATASYNC);
      break;
    case IoOp::Discard:
    case IoOp::SecureDiscard:  // validation only lets secure discard through for BlockIoctl
      io_uring_prep_fallocate(sqe, kFixedFileIndex, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              static_cast<off_t>(slot.offset), static_cast<off_t>(slot.bytes));
      break;
  }
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, index);
  return true;
}

bool UringQueue::prepare_remainder(uint32_t index) {
  io_uring_sqe* sqe = next_sqe();
  if (sqe == nullptr) return false;
  Slot& slot = slots_[index];
  slot.remainder.clear();
  uint64_t skip = slot.done;
  for (unsigned i = 0; i < slot.iovcnt; ++i) {
    iovec v = slot.iov[i];
    if (skip >= v.iov_len) {
      skip -= v.iov_len;
      continue;
    }
    v.iov_base = static_cast<char*>(v.iov_base) + skip;
    v.iov_len -= skip;
    skip = 0;
    slot.remainder.push_back(v);
  }
  const auto count = static_cast<unsigned>(slot.remainder.size());
  const uint64_t offset = slot.offset + slot.done;
  if (slot.op == IoOp::Read)
    io_uring_prep_readv(sqe, kFixedFileIndex, slot.remainder.data(), count, offset);
  else
    io_uring_prep_writev(sqe, kFixedFileIndex, slot.remainder.data(), count, offset);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, index);
  resubmit_pending_ = true;
  return true;
}

bool UringQueue::on_cqe(uint32_t index, int res, IoCompletion& out) {
  Slot& slot = slots_[index];
  if (slot.op != IoOp::Read && slot.op != IoOp::Write) {
    out = finish(index, res < 0 ? res : 0);
    return true;
  }
  if ((res == -EAGAIN || res == -EINTR) && slot.retries++ < kMaxRetries) {
    if (prepare_remainder(index)) return false;
  }
  if (res < 0) {
    out = finish(index, res);
    return true;
  }
  if (res == 0) {
    // A range check at submit makes EOF impossible unless the file shrank
    // underneath us; never report the partial transfer as success.
    spdlog::warn("{}: {} at offset {} made no progress after {} of {} bytes; failing it with EIO",
                 config_.name, slot.op == IoOp::Read ? "read" : "write", slot.offset, slot.done, slot.bytes);
    out = finish(index, -EIO);
    return true;
  }
  slot.done += static_cast<uint64_t>(res);
  if (slot.done < slot.bytes) {
    if (prepare_remainder(index)) return false;
    spdlog::error("{}: no submission slot to resume a short transfer; failing it", config_.name);
    out = finish(index, -EIO);
    return true;
  }
  out = finish(index, static_cast<int32_t>(slot.bytes));
  return true;
}

IoCompletion UringQueue::finish(uint32_t index, int32_t result) {
  Slot& slot = slots_[index];
  if (!slot.via_thread) --ring_ops_;
  free_slots_.push_back(index);
  --in_flight_;
  return {slot.tag, result};
}

BlockDiscardThread& UringQueue::discard_thread() {
  if (!discard_thread_) discard_thread_ = std::make_unique<BlockDiscardThread>(config_.fd, signal_);
  return *discard_thread_;
}

}  // namespace xbb::storage
