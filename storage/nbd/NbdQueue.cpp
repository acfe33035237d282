#include "storage/nbd/NbdQueue.hpp"

#include <cerrno>

#include <fmt/format.h>

#include "storage/RequestValidation.hpp"

namespace xbb::storage {

NbdQueue::NbdQueue(std::shared_ptr<NbdConnection> connection, const Properties& properties, unsigned depth)
    : connection_(std::move(connection)), properties_(properties), depth_(depth) {
  if (depth == 0 || depth > kMaxDepth)
    throw StorageError(fmt::format("nbd: queue depth {} is not between 1 and {}", depth, kMaxDepth));
  batch_.reserve(depth);
  done_.reserve(depth);
}

NbdQueue::~NbdQueue() {
  // Dropping the last reference stops the connection, which answers everything
  // at once; a shared connection answers within the request timeout.
  connection_.reset();
  std::unique_lock lock(mutex_);
  all_delivered_.wait(lock, [this] { return delivered_ == posted_; });
}

int NbdQueue::submit(const IoRequest& request) {
  ValidatedRequest valid;
  if (int err = validate_request(request, properties_, 0, valid)) return err;
  if (in_flight_ >= depth_) return -EAGAIN;
  batch_.push_back({this, request, valid.bytes});
  ++in_flight_;
  return 0;
}

void NbdQueue::flush_submissions() {
  posted_ += batch_.size();
  connection_->post(batch_);
}

size_t NbdQueue::reap(std::span<IoCompletion> out) {
  signal_.clear();
  size_t n = 0;
  {
    std::lock_guard lock(mutex_);
    while (n < out.size() && head_ < done_.size()) out[n++] = done_[head_++];
    if (head_ == done_.size()) {
      done_.clear();
      head_ = 0;
      signalled_ = false;
    } else {
      signal_.raise();  // more than `out` could take: stay readable
    }
  }
  in_flight_ -= static_cast<unsigned>(n);
  return n;
}

void NbdQueue::deliver(uint64_t tag, int32_t result) {
  std::lock_guard lock(mutex_);
  done_.push_back({tag, result});
  ++delivered_;
  if (!signalled_) {  // one eventfd write per reap cycle
    signal_.raise();
    signalled_ = true;
  }
  all_delivered_.notify_all();  // under the lock: the destructor may free us right after
}

}  // namespace xbb::storage
