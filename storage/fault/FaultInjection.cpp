#include "storage/fault/FaultInjection.hpp"

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>

#include <cerrno>
#include <cstring>
#include <queue>
#include <vector>

#include <fmt/format.h>

#include "storage/CompletionSignal.hpp"
#include "storage/RequestValidation.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::storage {
namespace {

uint64_t mix(uint64_t x) {  // splitmix64 finaliser: a good 64-bit hash
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

class FaultInjectionQueue final : public StorageQueue {
 public:
  FaultInjectionQueue(std::unique_ptr<StorageQueue> inner, const Properties& properties,
                      const FaultSettingsCell& settings, uint32_t queue_number, unsigned depth)
      : inner_(std::move(inner)),
        properties_(properties),
        settings_(settings),
        queue_number_(queue_number),
        depth_(depth),
        epoll_(::epoll_create1(EPOLL_CLOEXEC)),
        timer_(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)),
        slots_(depth),
        inner_batch_(depth) {
    if (!epoll_ || !timer_) throw StorageError(fmt::format("fault: cannot create epoll/timerfd: {}", std::strerror(errno)));
    for (int fd : {inner_->completion_fd(), timer_.get(), ready_signal_.fd()}) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
        throw StorageError(fmt::format("fault: cannot watch fd {}: {}", fd, std::strerror(errno)));
    }
    for (uint32_t i = depth; i > 0; --i) free_.push_back(i - 1);
  }

  int submit(const IoRequest& request) override {
    if (free_.empty()) return -EAGAIN;
    ValidatedRequest valid;  // a request that can never succeed is refused, not "failed"
    if (int err = validate_request(request, properties_, 0, valid)) return err;
    const FaultSettings settings = settings_.load();
    const FaultDecision decision = decide_fault(settings, queue_number_, next_k_, request.op);
    const uint32_t index = free_.back();
    Slot& slot = slots_[index];
    slot.tag = request.tag;
    slot.due_ns = decision.latency_us ? now_ns() + decision.latency_us * 1000ull : 0;
    if (decision.fail) {
      hold(index, -EIO);
    } else {
      IoRequest forwarded = request;
      forwarded.tag = index;
      if (int rc = inner_->submit(forwarded)) return rc;  // not accepted: k not consumed
    }
    ++next_k_;
    free_.pop_back();
    return 0;
  }

  void flush_submissions() override { inner_->flush_submissions(); }
  int completion_fd() const override { return epoll_.get(); }
  unsigned capacity() const override { return depth_; }
  unsigned in_flight() const override { return depth_ - static_cast<unsigned>(free_.size()); }

  size_t reap(std::span<IoCompletion> out) override {
    ready_signal_.clear();
    uint64_t expirations;
    [[maybe_unused]] ssize_t n = ::read(timer_.get(), &expirations, sizeof expirations);
    // Pull everything the inner queue finished into the timer queue / ready list.
    for (;;) {
      const size_t got = inner_->reap(inner_batch_);
      for (size_t i = 0; i < got; ++i) hold(static_cast<uint32_t>(inner_batch_[i].tag), inner_batch_[i].result);
      if (got < inner_batch_.size()) break;
    }
    const uint64_t now = delayed_.empty() ? 0 : now_ns();
    while (!delayed_.empty() && delayed_.top().due_ns <= now) {
      ready_.push_back(delayed_.top().index);
      delayed_.pop();
    }
    size_t count = 0;
    while (count < out.size() && ready_head_ < ready_.size()) {
      const uint32_t index = ready_[ready_head_++];
      out[count++] = {slots_[index].tag, slots_[index].result};
      free_.push_back(index);
    }
    if (ready_head_ == ready_.size()) {
      ready_.clear();
      ready_head_ = 0;
    } else {
      ready_signal_.raise();
    }
    arm_timer();
    return count;
  }

 private:
  struct Slot {
    uint64_t tag = 0;
    uint64_t due_ns = 0;  // 0: no injected latency
    int32_t result = 0;
  };
  struct Delayed {
    uint64_t due_ns;
    uint32_t index;
    bool operator>(const Delayed& other) const { return due_ns > other.due_ns; }
  };

  // A finished (or failed) request waits for its due time, then for reap().
  void hold(uint32_t index, int32_t result) {
    Slot& slot = slots_[index];
    slot.result = result;
    if (slot.due_ns != 0) {
      delayed_.push({slot.due_ns, index});
      arm_timer();
    } else {
      ready_.push_back(index);
      ready_signal_.raise();
    }
  }

  void arm_timer() {
    itimerspec spec{};
    if (!delayed_.empty()) {
      const uint64_t due = delayed_.top().due_ns;
      spec.it_value.tv_sec = static_cast<time_t>(due / 1'000'000'000ull);
      spec.it_value.tv_nsec = static_cast<long>(due % 1'000'000'000ull);
      if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
    }
    // Absolute time: a due time already past fires at once. All zero disarms.
    ::timerfd_settime(timer_.get(), TFD_TIMER_ABSTIME, &spec, nullptr);
  }

  std::unique_ptr<StorageQueue> inner_;
  Properties properties_;
  const FaultSettingsCell& settings_;
  const uint32_t queue_number_;
  const unsigned depth_;
  UniqueFd epoll_;
  UniqueFd timer_;
  CompletionSignal ready_signal_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
  std::vector<IoCompletion> inner_batch_;
  std::priority_queue<Delayed, std::vector<Delayed>, std::greater<>> delayed_;
  std::vector<uint32_t> ready_;
  size_t ready_head_ = 0;
  uint64_t next_k_ = 0;
};

}  // namespace

FaultDecision decide_fault(const FaultSettings& s, uint32_t queue, uint64_t k, IoOp op) {
  FaultDecision d;
  if (!s.applies_to(op)) return d;
  const uint64_t h = mix(s.seed ^ mix((static_cast<uint64_t>(queue) << 48) ^ k));
  d.fail = (h % FaultSettings::kPerMax) < s.fail_per_10000;
  if (s.latency_max_us != 0) {
    const uint64_t span = static_cast<uint64_t>(s.latency_max_us) - s.latency_min_us + 1;
    d.latency_us = s.latency_min_us + static_cast<uint32_t>(mix(h) % span);
  }
  return d;
}

FaultInjectionStorage::FaultInjectionStorage(std::unique_ptr<Storage> inner, const FaultSettings& settings)
    : inner_(std::move(inner)), settings_(settings) {
  if (!inner_) throw StorageError("fault: no storage to wrap");
}

std::unique_ptr<StorageQueue> FaultInjectionStorage::open_queue(unsigned depth) {
  auto inner = inner_->open_queue(depth);
  return std::make_unique<FaultInjectionQueue>(std::move(inner), inner_->properties(), settings_,
                                               next_queue_.fetch_add(1, std::memory_order_relaxed), depth);
}

}  // namespace xbb::storage
