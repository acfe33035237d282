// The file kinds: "file:PATH" (a regular file), "dev:PATH" (a block device)
// and a plain PATH, told apart with stat().
#include <sys/stat.h>

#include <cerrno>

#include <fmt/format.h>

#include "storage/KindTable.hpp"
#include "storage/OpenError.hpp"
#include "storage/file/DeviceStorage.hpp"
#include "storage/file/FileStorage.hpp"

namespace xbb::storage {
namespace {

std::string require_path(const std::string& kind, const std::string& path) {
  if (path.empty()) throw StorageError(fmt::format("{}: no path given ({}:PATH)", kind, kind));
  return path;
}

std::unique_ptr<Storage> open_plain_path(const std::string& path, const OpenOptions& options) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw open_error("target", path, errno, !options.read_only);
  if (S_ISREG(st.st_mode)) return FileStorage::open(path, options);
  if (S_ISBLK(st.st_mode)) return DeviceStorage::open(path, options);
  throw StorageError(
      fmt::format("target: '{}' is {}; expected a disk image file or a block device", path, describe_file_type(st.st_mode)));
}

}  // namespace

void add_file_kinds(KindTable& table) {
  table.kinds["file"] = [](const std::string& a, const OpenOptions& o) {
    return std::unique_ptr<Storage>(FileStorage::open(require_path("file", a), o));
  };
  table.kinds["dev"] = [](const std::string& a, const OpenOptions& o) {
    return std::unique_ptr<Storage>(DeviceStorage::open(require_path("dev", a), o));
  };
  table.plain_path = open_plain_path;
}

}  // namespace xbb::storage
