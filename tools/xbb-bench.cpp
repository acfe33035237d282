// xbb-bench: an fio-like job through xbbd (the real daemon, on a simulated Xen
// host, with a software blkfront), then the same job with fio straight on the
// same storage, back to back in one run, printed side by side with the ratio
// xbbd/fio (DESIGN.md §7: ratios, never lone absolute times). --json for
// scripts. See BenchJob.cpp for the options.
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <thread>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "tools/BenchReport.hpp"
#include "tools/BenchTarget.hpp"

namespace {

std::string host_note() {
  std::ifstream in("/proc/loadavg");
  double one = 0;
  in >> one;
  return fmt::format("{} CPU(s), load average {:.2f} at start (other work shares these CPUs: compare ratios, not "
                     "absolute numbers)",
                     std::thread::hardware_concurrency(), one);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace xbb::bench;
  std::optional<BenchJob> parsed;
  try {
    parsed = parse_bench_args(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::invalid_argument& e) {
    std::cerr << "xbb-bench: " << e.what() << "\n\n" << bench_usage();
    return 2;
  }
  if (!parsed) {
    std::cout << bench_usage();
    return 0;
  }
  const BenchJob& job = *parsed;
  // The daemon's log goes to stderr: stdout carries the report (--json
  // output must parse).
  spdlog::set_default_logger(spdlog::stderr_color_mt("xbb-bench"));
  spdlog::set_level(spdlog::level::warn);

  Comparison c;
  c.job = job;
  c.host_note = host_note();
  std::string temporary_file;
  try {
    const TargetPlan plan = plan_target(job);
    c.xbbd = run_xbbd(job, plan.xbbd_direct);

    std::string fio_file = plan.path;
    if (plan.kind == TargetKind::Ram) {
      fio_file = job.fio_file.empty() ? fmt::format("/dev/shm/xbb-bench-{}.img", ::getpid()) : job.fio_file;
      create_fio_file(fio_file, c.xbbd.disk_bytes);
      if (job.fio_file.empty()) temporary_file = fio_file;
    }
    std::string fio_mode;
    const bool run_fio = job.run_fio && plan.kind != TargetKind::Other;
    const bool direct = run_fio ? fio_direct(fio_file, job.direct, fio_mode) : false;
    switch (plan.kind) {
      case TargetKind::Ram:
        c.storage_description = fmt::format("{} (xbbd RAM disk); fio on tmpfs file {}, {}", job.target, fio_file, fio_mode);
        break;
      case TargetKind::File:
        c.storage_description = fmt::format("file {}; xbbd {}, fio {}", plan.path,
                                            plan.xbbd_direct ? "O_DIRECT" : "buffered", fio_mode);
        break;
      case TargetKind::Device:
        c.storage_description = fmt::format("block device {}; xbbd O_DIRECT, fio {}", plan.path, fio_mode);
        break;
      case TargetKind::Other:
        c.storage_description = job.target;
        break;
    }
    if (run_fio) {
      c.fio = xbb::bench::run_fio(job, fio_file, c.xbbd.region_bytes, direct);
    } else {
      c.fio_skipped = job.run_fio ? plan.why_no_fio : "--no-fio";
    }
  } catch (const std::exception& e) {
    if (!temporary_file.empty()) ::unlink(temporary_file.c_str());
    std::cerr << "xbb-bench: " << e.what() << "\n";
    return 1;
  }
  if (!temporary_file.empty()) ::unlink(temporary_file.c_str());

  if (job.json) {
    std::cout << format_json(c).dump(2) << std::endl;
  } else {
    std::cout << format_table(c);
  }
  const bool ok = c.xbbd.result.errors == 0 && c.xbbd.violations.empty() && (!c.fio || c.fio->error.empty());
  return ok ? 0 : 1;
}
