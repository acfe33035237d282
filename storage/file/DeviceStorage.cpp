#include "storage/file/DeviceStorage.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <bit>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "storage/file/BlockSysfs.hpp"
#include "storage/OpenError.hpp"
#include "storage/file/ImageClaim.hpp"
#include "storage/file/UringQueue.hpp"

namespace xbb::storage {
namespace {

UniqueFd open_device(const std::string& path, bool write) {
  UniqueFd fd(::open(path.c_str(), O_CLOEXEC | O_DIRECT | (write ? O_RDWR : O_RDONLY)));
  if (!fd) throw open_error("dev", path, errno, write);
  return fd;
}

bool probe_secure_discard(int fd) {
  uint64_t range[2] = {1, 0};  // misaligned on purpose: never discards anything
  if (::ioctl(fd, BLKSECDISCARD, range) == 0) return true;  // not expected; harmless
  return errno == EINVAL;
}

}  // namespace

std::unique_ptr<DeviceStorage> DeviceStorage::open(const std::string& path, const OpenOptions& options) {
  // stat() before open(): opening a non-block file with O_DIRECT fails with
  // an unhelpful EINVAL, and opening a FIFO could block.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw open_error("dev", path, errno, !options.read_only);
  if (!S_ISBLK(st.st_mode))
    throw StorageError(fmt::format("dev: '{}' is {}, not a block device{}", path, describe_file_type(st.st_mode),
                                   S_ISREG(st.st_mode) ? " (use file:PATH or the plain path)" : ""));
  UniqueFd fd = open_device(path, false);
  if (::fstat(fd.get(), &st) != 0 || !S_ISBLK(st.st_mode))
    throw StorageError(fmt::format("dev: '{}' changed while being opened", path));
  int device_ro = 0;
  if (::ioctl(fd.get(), BLKROGET, &device_ro) != 0) device_ro = 0;
  const bool read_only = options.read_only || device_ro != 0;
  if (device_ro && !options.read_only)
    spdlog::warn("dev: '{}' is a read-only block device; serving it read-only", path);
  if (!read_only) fd = open_device(path, true);

  Properties p;
  p.read_only = read_only;
  uint64_t size = 0;
  int logical = 0;
  unsigned int physical = 0;
  if (::ioctl(fd.get(), BLKGETSIZE64, &size) != 0 || ::ioctl(fd.get(), BLKSSZGET, &logical) != 0)
    throw StorageError(fmt::format("dev: cannot query the size of '{}': {}", path, std::strerror(errno)));
  if (::ioctl(fd.get(), BLKPBSZGET, &physical) != 0) physical = 0;
  if (logical < 512 || !std::has_single_bit(static_cast<unsigned>(logical)))
    throw StorageError(fmt::format("dev: '{}' reports an unusable logical block size {}", path, logical));
  p.size_bytes = size;
  p.logical_block_size = static_cast<uint32_t>(logical);
  p.physical_block_size = physical >= p.logical_block_size && std::has_single_bit(physical)
                              ? physical
                              : p.logical_block_size;
  if (p.size_bytes == 0)
    throw StorageError(fmt::format("dev: '{}' has size 0 (no medium, or an empty loop device?)", path));
  if (p.size_bytes % p.logical_block_size != 0)
    throw StorageError(fmt::format("dev: size of '{}' ({} bytes) is not a multiple of its {}-byte blocks", path,
                                   p.size_bytes, p.logical_block_size));
  p.can_flush = read_block_attribute(st.st_rdev, "queue/write_cache").value_or("") != "write through";
  if (!read_only && read_block_number(st.st_rdev, "queue/discard_max_bytes").value_or(0) > 0) {
    p.can_discard = true;
    const uint64_t granularity = read_block_number(st.st_rdev, "queue/discard_granularity").value_or(0);
    p.discard_granularity = granularity >= p.logical_block_size && granularity <= (1u << 30)
                                ? static_cast<uint32_t>(granularity)
                                : p.logical_block_size;
    p.discard_alignment =
        static_cast<uint32_t>(read_block_number(st.st_rdev, "discard_alignment").value_or(0) % p.discard_granularity);
    p.can_secure_discard = probe_secure_discard(fd.get());
  }
  spdlog::debug("dev: opened '{}' ({} bytes, {}/{} blocks, {}, flush {}, discard {}, secure discard {})", path,
                p.size_bytes, p.logical_block_size, p.physical_block_size, read_only ? "ro" : "rw", p.can_flush,
                p.can_discard, p.can_secure_discard);
  return std::unique_ptr<DeviceStorage>(new DeviceStorage(path, std::move(fd), p));
}

DeviceStorage::DeviceStorage(std::string path, UniqueFd fd, Properties properties)
    : path_(std::move(path)), fd_(std::move(fd)), properties_(properties) {}

std::unique_ptr<StorageQueue> DeviceStorage::open_queue(unsigned depth) {
  UringQueueConfig config;
  config.fd = fd_.get();
  config.properties = properties_;
  config.buffer_alignment = properties_.logical_block_size;
  config.discard = properties_.can_discard ? DiscardMethod::BlockIoctl : DiscardMethod::None;
  config.name = describe();
  return std::make_unique<UringQueue>(std::move(config), depth);
}

std::optional<uint64_t> DeviceStorage::current_size() const {
  uint64_t size = 0;
  if (::ioctl(fd_.get(), BLKGETSIZE64, &size) != 0) return std::nullopt;
  return size;
}

std::unique_ptr<StorageClaim> DeviceStorage::claim(bool writable) const {
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0)
    throw StorageError(fmt::format("dev: cannot stat '{}': {}", path_, std::strerror(errno)));
  return claim_block_device("dev", path_, st, writable && !properties_.read_only);
}

}  // namespace xbb::storage
