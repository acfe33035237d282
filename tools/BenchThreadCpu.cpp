#include "tools/BenchThreadCpu.hpp"

#include <dirent.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <sstream>

namespace xbb::bench {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

uint64_t ticks_to_ns(uint64_t ticks) {
  static const long hz = ::sysconf(_SC_CLK_TCK);
  return ticks * (1000000000ull / static_cast<uint64_t>(hz > 0 ? hz : 100));
}

}  // namespace

bool parse_proc_stat(const std::string& text, std::string& comm, uint64_t& ticks) {
  const auto open = text.find('(');
  const auto close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return false;
  comm = text.substr(open + 1, close - open - 1);
  // After "(comm) ": state(3) ppid pgrp session tty_nr tpgid flags minflt
  // cminflt majflt cmajflt utime(14) stime(15).
  std::istringstream rest(text.substr(close + 1));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int n = 3; n <= 15; ++n) {
    if (!(rest >> field)) return false;
    try {
      if (n == 14) utime = std::stoull(field);
      if (n == 15) stime = std::stoull(field);
    } catch (const std::exception&) {
      return false;
    }
  }
  ticks = utime + stime;
  return true;
}

uint64_t thread_cpu_ns(pid_t tid) {
  const std::string dir = "/proc/self/task/" + std::to_string(tid);
  // schedstat: "<ns on cpu> <ns waiting> <timeslices>".
  std::istringstream schedstat(slurp(dir + "/schedstat"));
  uint64_t ns = 0;
  if (schedstat >> ns) return ns;
  std::string comm;
  uint64_t ticks = 0;
  return parse_proc_stat(slurp(dir + "/stat"), comm, ticks) ? ticks_to_ns(ticks) : 0;
}

std::map<pid_t, ThreadCpu> sample_threads() {
  std::map<pid_t, ThreadCpu> out;
  DIR* dir = ::opendir("/proc/self/task");
  if (!dir) return out;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    const pid_t tid = static_cast<pid_t>(std::stol(entry->d_name));
    ThreadCpu t;
    std::string name = slurp("/proc/self/task/" + std::to_string(tid) + "/comm");
    while (!name.empty() && name.back() == '\n') name.pop_back();
    t.name = name;
    t.cpu_ns = thread_cpu_ns(tid);
    out[tid] = t;
  }
  ::closedir(dir);
  return out;
}

uint64_t process_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

pid_t current_tid() { return static_cast<pid_t>(::syscall(SYS_gettid)); }

}  // namespace xbb::bench
