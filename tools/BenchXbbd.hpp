// The xbbd side: a simulated Xen host in this process (SimWorld), the same
// backend::Daemon that xbbd runs on its own control thread (with its queue
// worker threads), and a software blkfront driven by the calling thread.
//
// One thread drives every ring: SoftBlkfront is single-threaded and a disk is
// one instance, so --queues N means N rings fed round robin by one thread, each
// kept at --iodepth requests. The frontend's CPU cost is measured on that
// thread; the backend's is the rest of the process (the daemon's workers and
// any io_uring workers they spawn; the control thread, idle while I/O runs, is
// reported apart).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/BenchJob.hpp"
#include "tools/BenchResult.hpp"

namespace xbb::bench {

struct ThreadShare {
  std::string name;
  double cpu_s = 0;
  double utilisation = 0;  // cpu_s / wall time of the measured phase
};

struct XbbdRun {
  SideResult result;
  uint64_t disk_bytes = 0;     // what the frontend saw
  uint64_t region_bytes = 0;   // the part the job used
  unsigned ring_page_order = 0;
  bool persistent = false;     // negotiated
  double frontend_utilisation = 0;
  double backend_utilisation = 0;  // in cores: may exceed 1 with several queues
  double control_cpu_s = 0;
  std::vector<ThreadShare> backend_threads;  // live daemon threads (workers)
  std::string limited_by;      // "frontend", "backend", or "neither (...)"
  nlohmann::json daemon_stats; // xbbctl stats for the device
  std::vector<std::string> violations;
};

// Throws std::runtime_error naming what failed (target refused, no connect,
// no progress).
XbbdRun run_xbbd(const BenchJob& job, bool direct_io);

}  // namespace xbb::bench
