#include "storage/CompletionSignal.hpp"

#include <sys/eventfd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "storage/Storage.hpp"

namespace xbb::storage {

CompletionSignal::CompletionSignal() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!fd_) throw StorageError(std::string("cannot create completion eventfd: ") + std::strerror(errno));
}

void CompletionSignal::raise() const {
  const uint64_t one = 1;
  // Only EAGAIN (counter saturated, so already readable) can fail here.
  [[maybe_unused]] ssize_t n = ::write(fd_.get(), &one, sizeof one);
}

void CompletionSignal::clear() const {
  uint64_t value;
  [[maybe_unused]] ssize_t n = ::read(fd_.get(), &value, sizeof value);
}

}  // namespace xbb::storage
