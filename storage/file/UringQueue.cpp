#include "storage/file/UringQueue.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <sys/uio.h>
#include <sys/vfs.h>

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

// What is left of `iov` once `skip` bytes moved.
void remaining_iovecs(const iovec* iov, unsigned iovcnt, uint64_t skip, std::vector<iovec>& out) {
  out.clear();
  for (unsigned i = 0; i < iovcnt; ++i) {
    iovec v = iov[i];
    if (skip >= v.iov_len) {
      skip -= v.iov_len;
      continue;
    }
    v.iov_base = static_cast<char*>(v.iov_base) + skip;
    v.iov_len -= skip;
    skip = 0;
    out.push_back(v);
  }
}

// See "Memory-backed files" in UringQueue.hpp: a tmpfs/ramfs file that
// refuses RWF_NOWAIT, probed with one small read at offset 0.
bool wants_inline_io(int fd, const Properties& p) {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0) return false;
  if (fs.f_type != TMPFS_MAGIC && fs.f_type != RAMFS_MAGIC) return false;
  const size_t length = p.logical_block_size;
  if (p.size_bytes < length) return false;
  void* buffer = nullptr;
  if (::posix_memalign(&buffer, 4096, length) != 0) return false;
  iovec v{buffer, length};
  const ssize_t rc = ::preadv2(fd, &v, 1, 0, RWF_NOWAIT);
  const int error = errno;
  std::free(buffer);
  return rc < 0 && error == EOPNOTSUPP;
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
  inline_io_ = config_.mapped != nullptr || wants_inline_io(config_.fd, config_.properties);
  if (inline_io_) {
    inline_done_.reserve(depth);
    spdlog::debug("{}: memory-backed file: reads and writes run inline{}", config_.name,
                  config_.mapped != nullptr ? ", reads through its mapping where it has pages" : "");
  }
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

  if (inline_io_ && (request.op == IoOp::Read || request.op == IoOp::Write)) {
    if (inline_head_ == inline_done_.size()) {
      inline_done_.clear();
      inline_head_ = 0;
    }
    inline_done_.push_back({request.tag, transfer_inline(request, valid.bytes)});
    ++in_flight_;
    if (!inline_signalled_) {
      signal_.raise();
      inline_signalled_ = true;
    }
    return 0;
  }

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
  // Before the punch: from here on the pages may be gone, and a read through
  // the mapping would allocate them again.
  if (config_.mapped != nullptr && request.op == IoOp::Discard) config_.mapped->mark_holes(request.offset, valid.bytes);

  if (slot.via_thread) {
    try {
      discard_thread().post({index, request.op == IoOp::SecureDiscard, request.offset, valid.bytes});
    } catch (const std::exception& e) {
      // The thread starts on the first discard; a host out of threads or
      // memory fails this discard, never the process.
      spdlog::error("{}: cannot start the discard thread: {}", config_.name, e.what());
      return -ENOMEM;
    }
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

// Same contract as the io_uring path: the whole transfer or an error, never
// a short success.
int32_t UringQueue::transfer_inline(const IoRequest& request, uint64_t bytes) {
  const bool read = request.op == IoOp::Read;
  if (read && config_.mapped != nullptr && config_.mapped->read(request.offset, request.iov, request.iovcnt, bytes)) {
    ++mapped_transfers_;
    return static_cast<int32_t>(bytes);
  }
  const int32_t result = transfer_with_syscalls(request, bytes);
  if (!read && result >= 0 && config_.mapped != nullptr) config_.mapped->mark_data(request.offset, bytes);
  return result;
}

int32_t UringQueue::transfer_with_syscalls(const IoRequest& request, uint64_t bytes) {
  const bool read = request.op == IoOp::Read;
  const iovec* iov = request.iov;
  unsigned iovcnt = request.iovcnt;
  std::vector<iovec> rest;  // only after a short transfer
  uint64_t done = 0;
  unsigned retries = 0;
  while (done < bytes) {
    const off_t at = static_cast<off_t>(request.offset + done);
    const ssize_t n = read ? ::preadv(config_.fd, iov, static_cast<int>(iovcnt), at)
                           : ::pwritev(config_.fd, iov, static_cast<int>(iovcnt), at);
    if (n < 0 && (errno == EINTR || errno == EAGAIN) && retries++ < kMaxRetries) continue;
    if (n < 0) return -errno;
    if (n == 0) {
      spdlog::warn("{}: {} at offset {} made no progress after {} of {} bytes; failing it with EIO", config_.name,
                   read ? "read" : "write", request.offset, done, bytes);
      return -EIO;
    }
    done += static_cast<uint64_t>(n);
    if (done < bytes) {
      remaining_iovecs(request.iov, request.iovcnt, done, rest);
      iov = rest.data();
      iovcnt = static_cast<unsigned>(rest.size());
    }
  }
  return static_cast<int32_t>(bytes);
}

size_t UringQueue::reap(std::span<IoCompletion> out) {
  signal_.clear();  // before looking, so a completion arriving later re-arms it
  size_t n = 0;
  inline_signalled_ = false;
  while (n < out.size() && inline_head_ < inline_done_.size()) {
    out[n++] = inline_done_[inline_head_++];
    --in_flight_;
  }
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
  const bool more = has_completions();
  if (more) signal_.raise();
  if (inline_head_ < inline_done_.size()) inline_signalled_ = true;
  return n;
}

bool UringQueue::has_completions() const {
  return inline_head_ < inline_done_.size() || io_uring_cq_ready(&ring_) > 0 ||
         discard_done_head_ < discard_done_.size() || (discard_thread_ && discard_thread_->has_done());
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
  remaining_iovecs(slot.iov, slot.iovcnt, slot.done, slot.remainder);
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
