#include "storage/snapshot/CowOriginQueue.hpp"

#include <sys/epoll.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "storage/snapshot/CowOriginFence.hpp"
#include "storage/RequestValidation.hpp"

namespace xbb::storage {
namespace {

constexpr unsigned kInside = 1u << 31;

bool modifies(IoOp op) { return op == IoOp::Write || op == IoOp::Discard || op == IoOp::SecureDiscard; }

}  // namespace

CowOriginQueue::CowOriginQueue(CowOriginStorage& origin, std::unique_ptr<StorageQueue> inner, unsigned depth)
    : origin_(origin),
      inner_(std::move(inner)),
      depth_(depth),
      mailbox_(std::make_shared<CowOriginMailbox>()),
      epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      slots_(depth),
      batch_(depth),
      membarrier_(cow_membarrier_available()) {
  if (!epoll_) throw StorageError(fmt::format("cow: cannot create an epoll fd: {}", std::strerror(errno)));
  for (int fd : {inner_->completion_fd(), mailbox_->signal().fd()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
      throw StorageError(fmt::format("cow: cannot watch fd {}: {}", fd, std::strerror(errno)));
  }
  free_.reserve(depth);
  for (uint32_t i = depth; i > 0; --i) free_.push_back(i - 1);
  ready_.reserve(depth);
  origin_.register_queue(this);
}

CowOriginQueue::~CowOriginQueue() {
  mailbox_->close();
  origin_.unregister_queue(this);
}

int CowOriginQueue::submit(const IoRequest& request) {
  if (free_.empty()) return -EAGAIN;
  const uint32_t index = free_.back();
  Slot& slot = slots_[index];
  slot.request = request;
  slot.modifies = modifies(request.op);
  if (!slot.modifies) {
    // Reads and flushes pass straight through: the origin's own queue
    // validates them (the same properties), so they are checked once.
    slot.bytes = 0;
    slot.stage = Stage::Issued;
    IoRequest forwarded = request;
    forwarded.tag = index;
    if (int rc = inner_->submit(forwarded)) {
      slot.stage = Stage::Free;
      return rc;
    }
    free_.pop_back();
    return 0;
  }
  ValidatedRequest valid;
  if (int err = validate_request(request, origin_.properties(), 0, valid)) return err;
  slot.bytes = valid.bytes;
  enter();  // the one atomic load of the write path
  free_.pop_back();
  int rc = 0;
  if (holding_ || !held_.empty()) {  // held writes keep their order
    slot.stage = Stage::Held;
    held_.push_back(index);
  } else if ((rc = route(index)) != 0) {
    slot.stage = Stage::Free;
    free_.push_back(index);
  }
  leave();
  return rc;
}

void CowOriginQueue::enter() {
  published_.store(writes_in_flight_ | kInside, std::memory_order_relaxed);
  cow_light_fence(membarrier_);
  sync_state();
}

void CowOriginQueue::sync_state() {
  const uint64_t state = origin_.state_.load(std::memory_order_acquire);
  if (state == seen_state_) return;
  seen_state_ = state;
  if (state & 1) {
    holding_ = true;
    maybe_acknowledge();
    return;
  }
  holding_ = false;
  list_ = origin_.current_list();
  bool issued = false;
  while (!held_.empty()) {
    const uint32_t index = held_.front();
    held_.pop_front();
    if (int rc = route(index)) finish(index, rc);
    issued = true;
  }
  if (issued) inner_->flush_submissions();
}

void CowOriginQueue::maybe_acknowledge() {
  if (!holding_ || writes_in_flight_ != 0 || acked_.load(std::memory_order_relaxed) == seen_state_) return;
  acked_.store(seen_state_, std::memory_order_release);
  origin_.notify_ack();
}

int CowOriginQueue::route(uint32_t index) {
  Slot& slot = slots_[index];
  if (!wrote_) {  // once per queue: lets attach_snapshot() know the origin changed
    wrote_ = true;
    origin_.written_.store(true, std::memory_order_relaxed);
  }
  for (const auto& snapshot : *list_) {
    if (snapshot->valid() && snapshot->active() && snapshot->needs_copy(slot.request.offset, slot.bytes)) {
      slot.stage = Stage::Copying;
      ++writes_in_flight_;
      origin_.copier().copy_before_write(mailbox_, index, slot.request.offset, slot.bytes);
      return 0;
    }
  }
  if (int rc = issue(index)) return rc;
  ++writes_in_flight_;
  return 0;
}

int CowOriginQueue::issue(uint32_t index) {
  Slot& slot = slots_[index];
  IoRequest forwarded = slot.request;
  forwarded.tag = index;
  if (int rc = inner_->submit(forwarded)) return rc;
  slot.stage = Stage::Issued;
  return 0;
}

void CowOriginQueue::finish(uint32_t index, int32_t result) {
  Slot& slot = slots_[index];
  slot.stage = Stage::Done;
  slot.result = result;
  ready_.push_back(index);
}

void CowOriginQueue::release(uint32_t index) {
  slots_[index].stage = Stage::Free;
  free_.push_back(index);
}

size_t CowOriginQueue::reap(std::span<IoCompletion> out) {
  mailbox_->signal().clear();
  enter();
  // Writes whose copies are durable go to the origin now.
  copied_.clear();
  mailbox_->take(copied_);
  bool issued = false;
  for (const IoCompletion& copied : copied_) {
    const auto index = static_cast<uint32_t>(copied.tag);
    if (index >= slots_.size() || slots_[index].stage != Stage::Copying) continue;
    if (int rc = issue(index)) {
      --writes_in_flight_;
      finish(index, rc);
    }
    issued = true;
  }
  if (issued) inner_->flush_submissions();
  // Finished origin I/O.
  for (;;) {
    const size_t got = inner_->reap(batch_);
    for (size_t i = 0; i < got; ++i) {
      const auto index = static_cast<uint32_t>(batch_[i].tag);
      if (slots_[index].modifies) --writes_in_flight_;
      finish(index, batch_[i].result);
    }
    if (got < batch_.size()) break;
  }
  maybe_acknowledge();
  leave();
  size_t count = 0;
  while (count < out.size() && ready_head_ < ready_.size()) {
    const uint32_t index = ready_[ready_head_++];
    out[count++] = {slots_[index].request.tag, slots_[index].result};
    release(index);
  }
  if (ready_head_ == ready_.size()) {
    ready_.clear();
    ready_head_ = 0;
  } else {
    mailbox_->signal().raise();  // more to hand out: stay readable
  }
  return count;
}

}  // namespace xbb::storage
