// Synchronous helpers for driving a StorageQueue in the NBD tests, plus the
// fixture's nbdkit/skip logic.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "storage/Storage.hpp"

namespace xbb::storage::test {

// Waits (polling completion_fd) until `count` completions are reaped or
// `limit` passes; returns what arrived, so a test can assert that nothing hung.
std::vector<IoCompletion> collect(StorageQueue& queue, size_t count,
                                  std::chrono::milliseconds limit = std::chrono::seconds(10));

// Submits one request, flushes and waits for its completion. Returns the
// submit error if submit() refused it, else the completion's result; a
// completion that never arrives is reported as INT32_MIN (fails any check).
int32_t run(StorageQueue& queue, const IoRequest& request);

// Deterministic bytes for (seed, offset), so a read knows what to expect.
void fill(std::span<unsigned char> out, uint64_t seed);

}  // namespace xbb::storage::test
