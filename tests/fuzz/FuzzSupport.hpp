// What every fuzz target shares: reading the input as a stream of small
// decisions, and checking invariants in a way both libFuzzer and the replay
// runner (fuzz_replay_main.cpp) catch (print what broke, then abort).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace xbb::fuzz {

[[noreturn]] inline void fail(const char* target, const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "%s: invariant failed at %s:%d: %s\n", target, file, line, what.c_str());
  std::fflush(stderr);
  std::abort();
}

// FUZZ_CHECK(cond, message): `message` is any expression convertible to
// std::string, only evaluated when the check fails.
#define XBB_FUZZ_CHECK(target, cond, message)                                                   \
  do {                                                                                          \
    if (!(cond)) ::xbb::fuzz::fail(target, __FILE__, __LINE__, std::string(#cond) + ": " + (message)); \
  } while (0)

// Reads the input front to back; past the end everything reads as zero, so
// every input, however short, is a complete program.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t u16() {
    const uint16_t lo = u8();
    return uint16_t(lo | u8() << 8);
  }
  uint32_t u32() {
    const uint32_t lo = u16();
    return lo | uint32_t(u16()) << 16;
  }
  uint64_t u64() {
    const uint64_t lo = u32();
    return lo | uint64_t(u32()) << 32;
  }
  // Up to `max` raw bytes, the count taken from the input first.
  std::string bytes(size_t max) {
    size_t n = max == 0 ? 0 : u8() % (max + 1);
    if (n > size_ - std::min(pos_, size_)) n = size_ - std::min(pos_, size_);
    std::string out(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return out;
  }
  // The unread rest.
  const uint8_t* rest() const { return data_ + (pos_ < size_ ? pos_ : size_); }
  size_t rest_size() const { return pos_ < size_ ? size_ - pos_ : 0; }
  void skip_all() { pos_ = size_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace xbb::fuzz
