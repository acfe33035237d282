// What the kernel says about this process: open fds and mapping permissions.
// Tests use it to prove that nothing leaks and that read-only maps really are.
#pragma once

#include <dirent.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

namespace xbb::test {

inline int count_open_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return -1;
  int n = 0;
  while (dirent* e = ::readdir(dir))
    if (e->d_name[0] != '.') ++n;
  ::closedir(dir);
  return n - 1;  // the directory's own fd
}

// The "rwxp" field of the /proc/self/maps line covering `address`, or "" if unmapped.
inline std::string mapping_permissions(const void* address) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  auto target = reinterpret_cast<uintptr_t>(address);
  while (std::getline(maps, line)) {
    unsigned long start = 0, end = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &start, &end, perms) != 3) continue;
    if (target >= start && target < end) return perms;
  }
  return "";
}

}  // namespace xbb::test
