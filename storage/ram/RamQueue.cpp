#include "storage/ram/RamQueue.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "storage/RequestValidation.hpp"

namespace xbb::storage {

RamQueue::RamQueue(unsigned char* memory, const Properties& properties, unsigned depth)
    : memory_(memory), properties_(properties), depth_(depth) {
  if (depth == 0 || depth > kMaxDepth)
    throw StorageError(fmt::format("ram: queue depth {} is not between 1 and {}", depth, kMaxDepth));
  done_.reserve(depth);
}

int RamQueue::submit(const IoRequest& request) {
  ValidatedRequest valid;
  if (int err = validate_request(request, properties_, 0, valid)) return err;
  if (in_flight() >= depth_) return -EAGAIN;
  if (head_ == done_.size()) {
    done_.clear();
    head_ = 0;
  }
  done_.push_back({request.tag, execute(request, valid.bytes)});
  if (!signalled_) {
    signal_.raise();
    signalled_ = true;
  }
  return 0;
}

size_t RamQueue::reap(std::span<IoCompletion> out) {
  signal_.clear();
  signalled_ = false;
  size_t n = 0;
  while (n < out.size() && head_ < done_.size()) out[n++] = done_[head_++];
  if (head_ < done_.size()) {
    signal_.raise();
    signalled_ = true;
  }
  return n;
}

int32_t RamQueue::execute(const IoRequest& request, uint64_t bytes) {
  switch (request.op) {
    case IoOp::Read:
    case IoOp::Write: {
      unsigned char* at = memory_ + request.offset;
      for (unsigned i = 0; i < request.iovcnt; ++i) {
        const iovec& v = request.iov[i];
        if (request.op == IoOp::Read)
          std::memcpy(v.iov_base, at, v.iov_len);
        else
          std::memcpy(at, v.iov_base, v.iov_len);
        at += v.iov_len;
      }
      return static_cast<int32_t>(bytes);
    }
    case IoOp::Flush:
      return 0;
    case IoOp::Discard:
    case IoOp::SecureDiscard:  // zeroing is as secure as memory gets
      zero(request.offset, bytes);
      return 0;
  }
  return -EINVAL;
}

void RamQueue::zero(uint64_t offset, uint64_t length) {
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t end = offset + length;
  const uint64_t first_page = (offset + page - 1) / page * page;
  const uint64_t last_page = end / page * page;
  if (first_page >= last_page) {
    std::memset(memory_ + offset, 0, length);
    return;
  }
  std::memset(memory_ + offset, 0, first_page - offset);
  // Returning whole pages to the kernel both zeroes them and frees the memory;
  // memset is the fallback if the kernel refuses.
  if (::madvise(memory_ + first_page, last_page - first_page, MADV_DONTNEED) != 0)
    std::memset(memory_ + first_page, 0, last_page - first_page);
  std::memset(memory_ + last_page, 0, end - last_page);
}

}  // namespace xbb::storage
