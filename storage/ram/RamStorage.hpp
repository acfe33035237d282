// A memory disk, like NetBSD md(4).
//
// - "Allocated" mode: an anonymous MAP_NORESERVE mapping, so a large RAM disk
//   costs nothing until written; holes read as zeros.
// - "Fixed" mode: preloaded from an image file at open (only the image's data
//   extents are copied, so a sparse image stays cheap). Writes go to memory
//   only; the image file is never modified.
// - I/O is a memcpy done inside submit(); completions wait for reap() and are
//   signalled through the queue's eventfd so the worker's poll loop is the same
//   as for io_uring storage.
// - Flush has nothing to do: can_flush is false, and flush requests still
//   succeed. Discard zeroes the range (MADV_DONTNEED on whole pages, memset on
//   the edges), granularity 4096.
// - Queues on different threads write the same memory without locking, like
//   a real disk: overlapping concurrent writes are the guest's problem. Only
//   memcpy/memset/madvise touch the memory, so there is no undefined behaviour
//   beyond the unspecified bytes of such a racing write.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "storage/OpenOptions.hpp"
#include "storage/Storage.hpp"

namespace xbb::storage {

class RamStorage final : public Storage {
 public:
  // `size_bytes` must be a non-zero multiple of 512, or 0 with an image (the
  // size is then the image size rounded up to 512). `image_path` empty: no
  // preload. Throws StorageError.
  static std::unique_ptr<RamStorage> create(uint64_t size_bytes, const std::string& image_path,
                                            const OpenOptions& options);
  ~RamStorage() override;
  RamStorage(const RamStorage&) = delete;
  RamStorage& operator=(const RamStorage&) = delete;

  const Properties& properties() const override { return properties_; }
  std::string describe() const override;
  std::unique_ptr<StorageQueue> open_queue(unsigned depth) override;
  bool same_data_for_every_open() const override { return false; }

 private:
  RamStorage(unsigned char* memory, Properties properties, std::string image_path);

  unsigned char* memory_;
  Properties properties_;
  std::string image_path_;
};

}  // namespace xbb::storage
