// A block device served through io_uring with O_DIRECT.
//
// - Opened read-only when asked, or when the device itself is read-only
//   (BLKROGET): the storage then reports read_only and the guest sees a
//   read-only disk rather than failing to attach.
// - Size from BLKGETSIZE64, logical/physical block size from BLKSSZGET /
//   BLKPBSZGET; buffers must be aligned to the logical block size.
// - can_flush unless sysfs queue/write_cache says "write through"; flush is
//   fdatasync either way.
// - Discard when sysfs queue/discard_max_bytes > 0, granularity from
//   queue/discard_granularity, alignment from discard_alignment. Discards run as
//   BLKDISCARD ioctls on a per-queue helper thread (see BlockDiscardThread.hpp).
// - Secure discard is probed with a deliberately misaligned BLKSECDISCARD (start
//   1, length 0): the kernel answers EOPNOTSUPP when the device cannot, and
//   EINVAL (the misalignment) when it can, without touching any data. Kernels
//   before 5.19 check support later and may over-report it; a secure discard
//   then completes with -EOPNOTSUPP.
#pragma once

#include <memory>
#include <string>

#include "storage/OpenOptions.hpp"
#include "storage/Storage.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::storage {

class DeviceStorage final : public Storage {
 public:
  // Throws StorageError with an administrator-readable reason.
  static std::unique_ptr<DeviceStorage> open(const std::string& path, const OpenOptions& options);

  const Properties& properties() const override { return properties_; }
  std::string describe() const override { return "dev:" + path_; }
  std::unique_ptr<StorageQueue> open_queue(unsigned depth) override;
  // O_EXCL for a writable disk, nothing for a read-only one (file/ImageClaim.hpp).
  std::unique_ptr<StorageClaim> claim(bool writable) const override;
  std::optional<uint64_t> current_size() const override;

 private:
  DeviceStorage(std::string path, UniqueFd fd, Properties properties);

  std::string path_;
  UniqueFd fd_;
  Properties properties_;
};

}  // namespace xbb::storage
