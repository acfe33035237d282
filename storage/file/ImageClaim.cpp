#include "storage/file/ImageClaim.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "storage/UniqueFd.hpp"

namespace xbb::storage {
namespace {

class DescriptorClaim final : public StorageClaim {
 public:
  explicit DescriptorClaim(UniqueFd fd) : fd_(std::move(fd)) {}

 private:
  UniqueFd fd_;  // the lock (or the exclusive open) lives as long as this descriptor
};

void check_same_file(const std::string& kind, const std::string& path, int fd, const struct stat& expected,
                     bool block_device) {
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    throw StorageError(fmt::format("{}: cannot check '{}' before claiming it: {}", kind, path, std::strerror(errno)));
  const bool same = block_device ? st.st_rdev == expected.st_rdev
                                 : st.st_dev == expected.st_dev && st.st_ino == expected.st_ino;
  if (!same) throw StorageError(fmt::format("{}: '{}' was replaced while being opened", kind, path));
}

}  // namespace

std::unique_ptr<StorageClaim> claim_image_file(const std::string& kind, const std::string& path,
                                               const struct stat& expected, bool writable) {
  // A write lock needs a descriptor open for writing.
  UniqueFd fd(::open(path.c_str(), O_CLOEXEC | O_NOCTTY | (writable ? O_RDWR : O_RDONLY)));
  if (!fd)
    throw StorageError(fmt::format("{}: cannot open '{}' to lock it: {}", kind, path, std::strerror(errno)));
  check_same_file(kind, path, fd.get(), expected, false);
  struct flock lock {};
  lock.l_type = writable ? F_WRLCK : F_RDLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = 0;
  lock.l_len = 0;  // the whole file, however it grows
  if (::fcntl(fd.get(), F_OFD_SETLK, &lock) != 0) {
    if (errno == EAGAIN || errno == EACCES) {
      throw StorageInUse(fmt::format(
          "{}: '{}' is in use: {} (another xbbd disk, QEMU, or another program that locks disk images); "
          "serve it to one guest at a time, or share it read-only with access=ro everywhere",
          kind, path, writable ? "another program has it open with a lock" : "another program has it open for writing"));
    }
    throw StorageError(fmt::format("{}: cannot lock '{}': {}", kind, path, std::strerror(errno)));
  }
  return std::make_unique<DescriptorClaim>(std::move(fd));
}

std::unique_ptr<StorageClaim> claim_block_device(const std::string& kind, const std::string& path,
                                                 const struct stat& expected, bool writable) {
  if (!writable) return nullptr;
  UniqueFd fd(::open(path.c_str(), O_CLOEXEC | O_RDONLY | O_EXCL));
  if (!fd) {
    if (errno == EBUSY) {
      throw StorageInUse(fmt::format(
          "{}: '{}' is in use: it is mounted, or held exclusively by another program (another xbbd disk, "
          "device-mapper, md); a writable disk needs the device to itself",
          kind, path));
    }
    throw StorageError(fmt::format("{}: cannot claim '{}': {}", kind, path, std::strerror(errno)));
  }
  check_same_file(kind, path, fd.get(), expected, true);
  return std::make_unique<DescriptorClaim>(std::move(fd));
}

}  // namespace xbb::storage
