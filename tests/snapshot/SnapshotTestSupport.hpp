// Helpers for the snapshot tests: a temporary directory, a synchronous driver
// for any StorageQueue, and self-identifying sector contents (every 512-byte
// sector written carries the id of the write and its own offset, so a read
// tells which write it sees and whether the bytes are intact).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "storage/Storage.hpp"

namespace xbb::storage::snapshot_test {

constexpr uint64_t kSector = 512;

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A sparse file of `size` bytes (zeros).
void make_file(const std::string& path, uint64_t size);
bool file_exists(const std::string& path);

// Page-aligned bytes.
class Buffer {
 public:
  explicit Buffer(size_t size);
  uint8_t* data() { return data_.get(); }
  size_t size() const { return size_; }
  std::span<uint8_t> span() { return {data(), size_}; }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, Free> data_;
  size_t size_;
};

// Sector contents for write `id` at byte `offset` (id 0: all zeros, the
// content of a fresh origin).
void fill_sectors(std::span<uint8_t> out, uint64_t offset, uint64_t id);
// The write id a sector carries, or nullopt-like ~0 if the sector is not
// exactly what fill_sectors() produced for some id at that offset.
constexpr uint64_t kCorrupt = ~uint64_t{0};
uint64_t sector_id(std::span<const uint8_t> sector, uint64_t offset);

// Submits one request and polls/reaps until its completion; returns the result.
int32_t run_one(StorageQueue& queue, const IoRequest& request);
int32_t read_at(StorageQueue& queue, uint64_t offset, std::span<uint8_t> into);
int32_t write_at(StorageQueue& queue, uint64_t offset, std::span<const uint8_t> from);
int32_t discard_at(StorageQueue& queue, uint64_t offset, uint64_t length);

// Reads the whole storage through `queue` and returns each sector's id.
std::vector<uint64_t> read_ids(StorageQueue& queue, uint64_t size);

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const StorageError& e) {
    return e.what();
  }
  return "";
}

}  // namespace xbb::storage::snapshot_test
