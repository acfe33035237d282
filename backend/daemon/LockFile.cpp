#include "backend/daemon/LockFile.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace xbb::backend {

std::variant<LockFile, std::string> LockFile::acquire(const std::string& path) {
  storage::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return "cannot open " + path + ": " + std::strerror(errno);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return "cannot lock " + path + ": " + std::strerror(errno);
    char text[32] = {};
    const ssize_t n = ::pread(fd.get(), text, sizeof text - 1, 0);
    std::string holder = n > 0 ? std::string(text, static_cast<size_t>(n)) : std::string();
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    return holder.empty() ? "held by another process (" + path + ")" : "held by process " + holder + " (" + path + ")";
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    // The lock holds all the same; only the message for the next one suffers.
  }
  return LockFile(path, std::move(fd));
}

}  // namespace xbb::backend
