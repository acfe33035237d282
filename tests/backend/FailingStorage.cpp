#include "tests/backend/FailingStorage.hpp"

#include <chrono>
#include <new>
#include <thread>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <system_error>

namespace xbb::backendtest {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "failing storage");
  }
  ~Fd() { ::close(fd_); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

class FailingQueue final : public storage::StorageQueue {
 public:
  FailingQueue(std::unique_ptr<storage::StorageQueue> inner, std::shared_ptr<FailurePlan> plan)
      : inner_(std::move(inner)),
        plan_(std::move(plan)),
        epoll_(::epoll_create1(EPOLL_CLOEXEC)),
        ready_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    // One pollable fd for both the inner completions and our failures.
    for (int fd : {inner_->completion_fd(), ready_.get()}) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
        throw std::system_error(errno, std::generic_category(), "failing storage: epoll_ctl");
    }
  }

  int submit(const storage::IoRequest& request) override {
    if (plan_->throw_on_submit.load()) throw std::bad_alloc();
    if (const int delay = plan_->write_submit_delay_ms.load(); delay > 0 && request.op == storage::IoOp::Write)
      std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    if (plan_->on_submit_set.load(std::memory_order_acquire)) plan_->on_submit();
    const int err = plan_->fail_with[static_cast<size_t>(request.op)].load();
    if (err == 0) return inner_->submit(request);
    if (in_flight() >= capacity()) return -EAGAIN;
    failed_.push_back({request.tag, -err});
    plan_->failed.fetch_add(1);
    return 0;
  }
  void flush_submissions() override {
    inner_->flush_submissions();
    if (!failed_.empty()) {
      const uint64_t one = 1;
      [[maybe_unused]] auto rc = ::write(ready_.get(), &one, sizeof one);
    }
  }
  int completion_fd() const override { return epoll_.get(); }
  size_t reap(std::span<storage::IoCompletion> out) override {
    size_t n = 0;
    uint64_t count;
    [[maybe_unused]] auto rc = ::read(ready_.get(), &count, sizeof count);
    while (n < out.size() && !failed_.empty()) {
      out[n++] = failed_.front();
      failed_.pop_front();
    }
    if (!failed_.empty()) {
      const uint64_t one = 1;
      [[maybe_unused]] auto rc2 = ::write(ready_.get(), &one, sizeof one);
    }
    return n + inner_->reap(out.subspan(n));
  }
  bool has_completions() const override { return !failed_.empty() || inner_->has_completions(); }
  unsigned capacity() const override { return inner_->capacity(); }
  unsigned in_flight() const override { return inner_->in_flight() + static_cast<unsigned>(failed_.size()); }

 private:
  std::unique_ptr<storage::StorageQueue> inner_;
  std::shared_ptr<FailurePlan> plan_;
  Fd epoll_;
  Fd ready_;
  std::deque<storage::IoCompletion> failed_;
};

}  // namespace

std::unique_ptr<storage::StorageQueue> FailingStorage::open_queue(unsigned depth) {
  return std::make_unique<FailingQueue>(inner_->open_queue(depth), plan_);
}

}  // namespace xbb::backendtest
