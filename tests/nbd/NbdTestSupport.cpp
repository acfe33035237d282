#include "tests/nbd/NbdTestSupport.hpp"

#include <poll.h>

#include <climits>

namespace xbb::storage::test {

std::vector<IoCompletion> collect(StorageQueue& queue, size_t count, std::chrono::milliseconds limit) {
  std::vector<IoCompletion> got;
  std::vector<IoCompletion> slots(64);
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (got.size() < count) {
    const size_t n = queue.reap(slots);
    got.insert(got.end(), slots.begin(), slots.begin() + static_cast<long>(n));
    if (n > 0) continue;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{queue.completion_fd(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
  return got;
}

int32_t run(StorageQueue& queue, const IoRequest& request) {
  if (int rc = queue.submit(request)) return rc;
  queue.flush_submissions();
  const auto done = collect(queue, 1);
  return done.size() == 1 ? done[0].result : INT32_MIN;
}

void fill(std::span<unsigned char> out, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (unsigned char& byte : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    byte = static_cast<unsigned char>(x);
  }
}

}  // namespace xbb::storage::test
