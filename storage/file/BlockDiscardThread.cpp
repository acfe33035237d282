#include "storage/file/BlockDiscardThread.hpp"

#include <linux/fs.h>
#include <sys/ioctl.h>

#include <cerrno>

namespace xbb::storage {

BlockDiscardThread::BlockDiscardThread(int fd, const CompletionSignal& signal)
    : fd_(fd), signal_(signal), thread_([this] { run(); }) {}

BlockDiscardThread::~BlockDiscardThread() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void BlockDiscardThread::post(const Job& job) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(job);
  }
  wake_.notify_one();
}

void BlockDiscardThread::take_done(std::vector<Done>& out) {
  std::lock_guard lock(mutex_);
  out.insert(out.end(), done_.begin(), done_.end());
  done_.clear();
  has_done_.store(false, std::memory_order_release);
}

void BlockDiscardThread::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping and drained
    const Job job = jobs_.front();
    jobs_.pop_front();
    lock.unlock();
    uint64_t range[2] = {job.offset, job.length};
    const int rc = ::ioctl(fd_, job.secure ? BLKSECDISCARD : BLKDISCARD, range);
    const int result = rc == 0 ? 0 : -errno;
    lock.lock();
    done_.push_back({job.user_data, result});
    has_done_.store(true, std::memory_order_release);
    signal_.raise();
  }
}

}  // namespace xbb::storage
