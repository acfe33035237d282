// CPU time per thread of this process, to split the cost of a run between
// the frontend (the benchmark's own thread) and the backend (the threads the
// daemon created). Read from /proc/self/task/TID/schedstat (nanoseconds on
// CPU) where the kernel has it, else utime+stime from .../stat (clock ticks).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

namespace xbb::bench {

struct ThreadCpu {
  std::string name;    // comm: "iou-wrk-1234" for an io_uring worker of thread 1234
  uint64_t cpu_ns = 0;
};

// Every live thread of this process, by TID.
std::map<pid_t, ThreadCpu> sample_threads();
// CPU time of one thread (0 when it is gone).
uint64_t thread_cpu_ns(pid_t tid);
// CPU time of the whole process, including threads that already exited
// (io_uring workers come and go).
uint64_t process_cpu_ns();
pid_t current_tid();

// Parses the text of a /proc/.../stat file: utime+stime in clock ticks and
// comm (which may hold spaces and parentheses). False when malformed.
bool parse_proc_stat(const std::string& text, std::string& comm, uint64_t& ticks);

}  // namespace xbb::bench
