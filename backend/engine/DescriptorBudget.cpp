#include "backend/engine/DescriptorBudget.hpp"

#include <dirent.h>
#include <sys/resource.h>

namespace xbb::backend {

size_t open_descriptors() {
  size_t n = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (dirent* entry = ::readdir(dir)) {
      if (entry->d_name[0] != '.') ++n;
    }
    ::closedir(dir);
    if (n > 0) --n;  // opendir's own
  }
  return n;
}

std::optional<std::string> check_descriptor_budget(unsigned queues) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return std::nullopt;
  const size_t open = open_descriptors();
  const size_t need = size_t{queues} * kDescriptorsPerQueue;
  if (open + need + kDescriptorReserve <= limit.rlim_cur) return std::nullopt;
  return "not enough file descriptors for " + std::to_string(queues) + " queue(s): they need about " +
         std::to_string(need) + ", and " + std::to_string(open) + " of the limit of " + std::to_string(limit.rlim_cur) +
         " are open (raise LimitNOFILE in xbbd.service, or lower max-queues)";
}

}  // namespace xbb::backend
