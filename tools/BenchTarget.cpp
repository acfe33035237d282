#include "tools/BenchTarget.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace xbb::bench {
namespace {

bool has_prefix(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// A "kind:" prefix as storage/Target.hpp defines it.
bool looks_like_kind(const std::string& target) {
  const auto colon = target.find(':');
  if (colon == std::string::npos || colon == 0) return false;
  for (size_t i = 0; i < colon; ++i) {
    const char c = target[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return false;
  }
  return true;
}

}  // namespace

bool opens_direct(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

TargetPlan plan_target(const BenchJob& job) {
  TargetPlan plan;
  const std::string& t = job.target;
  struct stat st {};
  if (has_prefix(t, "ram:")) {
    plan.kind = TargetKind::Ram;
    return plan;
  }
  std::string path = t;
  if (has_prefix(t, "file:")) path = t.substr(5);
  else if (has_prefix(t, "dev:")) path = t.substr(4);
  else if (looks_like_kind(t) && ::stat(t.c_str(), &st) != 0) {
    plan.kind = TargetKind::Other;
    plan.why_no_fio = "fio cannot open '" + t.substr(0, t.find(':')) + ":' targets";
    return plan;
  }
  if (::stat(path.c_str(), &st) != 0)
    throw std::invalid_argument("--target " + path + ": " + std::strerror(errno));
  plan.path = path;
  if (S_ISBLK(st.st_mode)) {
    plan.kind = TargetKind::Device;
    plan.xbbd_direct = true;  // DeviceStorage always opens O_DIRECT
  } else if (S_ISREG(st.st_mode)) {
    plan.kind = TargetKind::File;
    const bool can = opens_direct(path);
    if (job.direct == DirectMode::On && !can)
      throw std::invalid_argument("--direct 1: " + path + " does not open with O_DIRECT on this file system");
    plan.xbbd_direct = job.direct == DirectMode::On || (job.direct == DirectMode::Auto && can);
  } else {
    throw std::invalid_argument("--target " + path + " is neither a regular file nor a block device");
  }
  return plan;
}

bool fio_direct(const std::string& path, DirectMode mode, std::string& description) {
  const bool can = opens_direct(path);
  if (mode == DirectMode::On && !can)
    throw std::invalid_argument("--direct 1: " + path + " does not open with O_DIRECT");
  const bool direct = mode == DirectMode::On || (mode == DirectMode::Auto && can);
  if (direct) description = "O_DIRECT";
  else if (!can) description = "buffered (the file system refuses O_DIRECT)";
  else description = "buffered (--direct 0)";
  return direct;
}

void create_fio_file(const std::string& path, uint64_t bytes) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
  int rc = ::ftruncate(fd, static_cast<off_t>(bytes));
  if (rc == 0) rc = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
  else rc = errno;
  ::close(fd);
  if (rc != 0) throw std::runtime_error("cannot size " + path + ": " + std::strerror(rc));
}

}  // namespace xbb::bench
