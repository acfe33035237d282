#pragma once

// What the daemon tests wait and count with: the daemon acts on its own
// threads, so a test polls for what it expects, with a guard against a hang.
#include <dirent.h>

#include <chrono>
#include <cstddef>
#include <thread>

namespace xbb::backendtest {

// Polls `done` every `step` until it holds (true) or `guard` passes (false).
template <class Pred>
bool poll_until(Pred done, std::chrono::milliseconds guard, std::chrono::milliseconds step) {
  const auto deadline = std::chrono::steady_clock::now() + guard;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(step);
  }
  return true;
}

// Entries of a directory, "." and ".." left out (/proc/self/fd, /proc/self/task).
inline size_t count_dir_entries(const char* dir) {
  size_t n = 0;
  if (DIR* d = ::opendir(dir)) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
  }
  return n;
}

}  // namespace xbb::backendtest
