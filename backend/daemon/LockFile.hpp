// One owner per thing on a host: an flock(2)ed file that names the process
// holding it. xbbd takes one for the daemon (so a second xbbd refuses to
// start instead of adopting rings the first one serves) and one per device
// it serves (so a hand-started `xbbd --domain D --vdev V` cannot serve a disk
// a daemon already serves). The kernel drops the lock when the process dies,
// so a crash never leaves a stale lock behind; the file itself stays (removing
// it would race with the next owner's open).
#pragma once

#include <string>
#include <variant>

#include "storage/UniqueFd.hpp"

namespace xbb::backend {

class LockFile {
 public:
  // Takes the lock, or returns why not: "held by process PID" (or the error).
  static std::variant<LockFile, std::string> acquire(const std::string& path);

  LockFile(LockFile&&) noexcept = default;
  LockFile& operator=(LockFile&&) noexcept = default;
  const std::string& path() const { return path_; }

 private:
  LockFile(std::string path, storage::UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}

  std::string path_;
  storage::UniqueFd fd_;
};

}  // namespace xbb::backend
