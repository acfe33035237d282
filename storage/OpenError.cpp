#include "storage/OpenError.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace xbb::storage {

StorageError open_error(const std::string& kind, const std::string& path, int error, bool for_write) {
  switch (error) {
    case ENOENT:
      return StorageError(fmt::format("{}: '{}' does not exist", kind, path));
    case ENOTDIR:
      return StorageError(fmt::format("{}: a directory in the path '{}' is not a directory", kind, path));
    case EACCES:
    case EPERM:
      return StorageError(fmt::format("{}: permission denied opening '{}' for {}{}", kind, path,
                                      for_write ? "reading and writing" : "reading",
                                      for_write ? " (attach it read-only if the guest only reads it)" : ""));
    case EISDIR:
      return StorageError(fmt::format("{}: '{}' is a directory, not a disk image or block device", kind, path));
    case EROFS:
      return StorageError(fmt::format("{}: '{}' is on a read-only filesystem; attach it read-only", kind, path));
    case EBUSY:
      return StorageError(fmt::format("{}: '{}' is in use (mounted or held exclusively)", kind, path));
    case ETXTBSY:
      return StorageError(fmt::format("{}: '{}' is in use as a swap file or running program", kind, path));
    default:
      return StorageError(fmt::format("{}: cannot open '{}': {}", kind, path, std::strerror(error)));
  }
}

std::string describe_file_type(unsigned mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "an unknown kind of file";
}

}  // namespace xbb::storage
