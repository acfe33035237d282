// Helpers shared by the storage tests: aligned buffers, temporary files, loop
// devices, data patterns, and a synchronous driver for StorageQueue.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "storage/Storage.hpp"

namespace xbb::storage::test {

// Page-aligned (O_DIRECT-safe) zeroed memory.
class AlignedBuffer {
 public:
  explicit AlignedBuffer(size_t bytes);
  unsigned char* data() { return data_.get(); }
  const unsigned char* data() const { return data_.get(); }
  size_t size() const { return size_; }
  std::span<unsigned char> span() { return {data(), size_}; }
  iovec iov(size_t offset, size_t length) { return {data() + offset, length}; }

 private:
  struct Free {
    void operator()(unsigned char* p) const;
  };
  std::unique_ptr<unsigned char, Free> data_;
  size_t size_;
};

// Deterministic bytes for (seed, position): what a write stores and a read expects.
void fill_pattern(std::span<unsigned char> out, uint64_t seed);
bool all_zero(std::span<const unsigned char> bytes);

// Whether `directory` is on tmpfs (where FileStorage maps its files).
bool on_tmpfs(const std::string& directory);

// A sparse file of `size` bytes in `directory`, removed on destruction.
class TempFile {
 public:
  TempFile(const std::string& directory, uint64_t size, const std::string& name_hint = "disk");
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A temporary directory, removed (with its direct children) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A loop device over a file, attached with `losetup -f --show` and detached
// on destruction. attach() returns nullopt and sets `why_not` when impossible
// (not root, no loop support...).
class LoopDevice {
 public:
  static std::unique_ptr<LoopDevice> attach(const std::string& file, bool read_only, std::string& why_not);
  ~LoopDevice();
  const std::string& path() const { return path_; }

 private:
  explicit LoopDevice(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Waits (poll on completion_fd, with a generous hang guard) until `count`
// completions have been reaped; fails the test on a hang.
std::vector<IoCompletion> wait_for(StorageQueue& queue, size_t count);
// submit + flush_submissions + wait for that one completion.
IoCompletion run_one(StorageQueue& queue, const IoRequest& request);
// Convenience wrappers over run_one; return the completion result.
int32_t read_at(StorageQueue& queue, uint64_t offset, std::span<unsigned char> into);
int32_t write_at(StorageQueue& queue, uint64_t offset, std::span<const unsigned char> from);
int32_t discard_at(StorageQueue& queue, uint64_t offset, uint64_t length);
int32_t flush(StorageQueue& queue);

// The message of the StorageError thrown by `f`, or "" if none was thrown.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const StorageError& e) {
    return e.what();
  }
  return "";
}

}  // namespace xbb::storage::test
