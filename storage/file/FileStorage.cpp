#include "storage/file/FileStorage.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>

#include <algorithm>
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

uint32_t power_of_two_at_least_512(uint64_t value) {
  return static_cast<uint32_t>(std::bit_ceil(std::max<uint64_t>(value, 512)));
}

// The alignment O_DIRECT needs for this file's offsets, lengths and buffers.
uint32_t direct_io_alignment(int fd, const struct stat& st) {
#ifdef STATX_DIOALIGN
  struct statx sx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN) &&
      sx.stx_dio_offset_align != 0)
    return power_of_two_at_least_512(std::max(sx.stx_dio_offset_align, sx.stx_dio_mem_align));
#else
  (void)fd;
#endif
  if (auto logical = read_block_number(st.st_dev, "queue/logical_block_size"))
    return power_of_two_at_least_512(*logical);
  return 512;
}

// Punching a hole past end-of-file with KEEP_SIZE changes nothing, but only
// succeeds on filesystems that implement hole punching.
bool probe_punch_hole(int fd, uint64_t size, uint32_t block) {
  if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(size), block) == 0)
    return true;
  spdlog::debug("file: hole punching unsupported ({}); not offering discard", std::strerror(errno));
  return false;
}

}  // namespace

std::unique_ptr<FileStorage> FileStorage::open(const std::string& path, const OpenOptions& options) {
  // stat() before open(): opening a FIFO would block, a directory fails with
  // a vaguer EISDIR.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw open_error("file", path, errno, !options.read_only);
  if (!S_ISREG(st.st_mode))
    throw StorageError(fmt::format("file: '{}' is {}, not a regular file{}", path, describe_file_type(st.st_mode),
                                   S_ISBLK(st.st_mode) ? " (use dev:PATH or the plain path)" : ""));
  int flags = O_CLOEXEC | (options.read_only ? O_RDONLY : O_RDWR);
  if (options.direct_io) flags |= O_DIRECT;
  UniqueFd fd(::open(path.c_str(), flags));
  if (!fd) {
    const int error = errno;
    if (error == EINVAL && options.direct_io)
      throw StorageError(fmt::format("file: the filesystem holding '{}' does not support O_DIRECT; "
                                     "turn direct I/O off for this disk", path));
    throw open_error("file", path, error, !options.read_only);
  }
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    throw StorageError(fmt::format("file: '{}' changed while being opened", path));

  Properties p;
  p.size_bytes = static_cast<uint64_t>(st.st_size);
  p.read_only = options.read_only;
  p.can_flush = true;  // the page cache (and the disk below it) hold writes until fdatasync
  p.logical_block_size = options.direct_io ? direct_io_alignment(fd.get(), st) : 512;
  const uint32_t fs_block = std::has_single_bit(static_cast<uint64_t>(st.st_blksize))
                                ? static_cast<uint32_t>(st.st_blksize)
                                : 4096;
  p.physical_block_size = std::max(p.logical_block_size, std::min<uint32_t>(fs_block, 65536));
  if (p.size_bytes == 0)
    throw StorageError(fmt::format("file: '{}' is empty; give it a size first (truncate -s SIZE)", path));
  if (p.size_bytes % p.logical_block_size != 0)
    throw StorageError(fmt::format("file: size of '{}' ({} bytes) is not a multiple of {} bytes", path,
                                   p.size_bytes, p.logical_block_size));
  if (!options.read_only && probe_punch_hole(fd.get(), p.size_bytes, fs_block)) {
    p.can_discard = true;
    p.discard_granularity = std::max(fs_block, p.logical_block_size);
  }
  spdlog::debug("file: opened '{}' ({} bytes, {}{}, discard {})", path, p.size_bytes,
                options.read_only ? "ro" : "rw", options.direct_io ? ", O_DIRECT" : "", p.can_discard);
  return std::unique_ptr<FileStorage>(new FileStorage(path, std::move(fd), p, options.direct_io));
}

FileStorage::FileStorage(std::string path, UniqueFd fd, Properties properties, bool direct_io)
    : path_(std::move(path)),
      fd_(std::move(fd)),
      mapped_(MappedFile::map(fd_.get(), properties.size_bytes, describe())),
      properties_(properties),
      direct_io_(direct_io) {}

std::unique_ptr<StorageQueue> FileStorage::open_queue(unsigned depth) {
  UringQueueConfig config;
  config.fd = fd_.get();
  config.properties = properties_;
  config.buffer_alignment = direct_io_ ? properties_.logical_block_size : 0;
  config.discard = properties_.can_discard ? DiscardMethod::PunchHole : DiscardMethod::None;
  config.name = describe();
  config.mapped = mapped_.get();
  return std::make_unique<UringQueue>(std::move(config), depth);
}

std::optional<uint64_t> FileStorage::current_size() const {
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return std::nullopt;
  return static_cast<uint64_t>(st.st_size);
}

std::unique_ptr<StorageClaim> FileStorage::claim(bool writable) const {
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0)
    throw StorageError(fmt::format("file: cannot stat '{}': {}", path_, std::strerror(errno)));
  return claim_image_file("file", path_, st, writable);
}

}  // namespace xbb::storage
