#include "tools/BenchFio.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

extern char** environ;

namespace xbb::bench {
namespace {

// lat_ns holds percentiles only with --lat_percentiles=1 (fio >= 3.18);
// older fio reports them under clat_ns.
Latency latency_of(const nlohmann::json& dir) {
  const nlohmann::json* source = nullptr;
  for (const char* key : {"lat_ns", "clat_ns"}) {
    if (dir.contains(key) && dir[key].contains("percentile")) {
      source = &dir[key];
      break;
    }
  }
  if (!source) throw std::runtime_error("fio JSON has no latency percentiles");
  auto pct = [&](const char* key) -> double {
    const auto& p = (*source)["percentile"];
    if (!p.contains(key)) throw std::runtime_error(std::string("fio JSON lacks the ") + key + " percentile");
    return p[key].get<double>() / 1000.0;
  };
  Latency l;
  l.mean_us = source->value("mean", 0.0) / 1000.0;
  l.max_us = source->value("max", 0.0) / 1000.0;
  l.p50_us = pct("50.000000");
  l.p99_us = pct("99.000000");
  l.p999_us = pct("99.900000");
  return l;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

std::vector<std::string> fio_command(const BenchJob& job, const std::string& file, uint64_t region_bytes,
                                     bool direct, const std::string& output) {
  std::vector<std::string> argv = {"fio",
                                   "--name=xbb-bench",
                                   "--filename=" + file,
                                   "--ioengine=io_uring",
                                   std::string("--rw=") + pattern_name(job.pattern),
                                   fmt::format("--bs={}", job.block_size),
                                   fmt::format("--iodepth={}", job.iodepth),
                                   fmt::format("--numjobs={}", job.queues),
                                   "--group_reporting",
                                   fmt::format("--direct={}", direct ? 1 : 0),
                                   fmt::format("--size={}", region_bytes),
                                   // Uniform random offsets, like xbb-bench's own generator.
                                   "--norandommap",
                                   "--randrepeat=0",
                                   "--lat_percentiles=1",
                                   "--percentile_list=50:99:99.9",
                                   "--output-format=json",
                                   "--output=" + output};
  if (job.pattern == Pattern::RandRW) argv.push_back(fmt::format("--rwmixread={}", job.rwmixread));
  if (job.runtime_s > 0) {
    argv.push_back(fmt::format("--runtime={}ms", static_cast<uint64_t>(std::llround(job.runtime_s * 1000))));
    argv.push_back("--time_based");
  } else {
    argv.push_back(fmt::format("--io_size={}", job.size));
  }
  return argv;
}

SideResult parse_fio_json(const nlohmann::json& doc) {
  if (!doc.is_object() || !doc.contains("jobs") || !doc["jobs"].is_array() || doc["jobs"].empty())
    throw std::runtime_error("fio JSON has no jobs");
  const auto& j = doc["jobs"][0];
  if (j.value("error", 0) != 0) throw std::runtime_error(fmt::format("fio's job failed with error {}", j.value("error", 0)));
  SideResult r;
  r.name = "fio";
  double runtime_ms = 0;
  for (const char* dir : {"read", "write"}) {
    if (!j.contains(dir)) continue;
    const auto& d = j[dir];
    const uint64_t ios = d.value("total_ios", uint64_t{0});
    if (ios == 0) continue;
    (std::string(dir) == "read" ? r.reads : r.writes) = ios;
    r.bytes += d.value("io_bytes", uint64_t{0});
    runtime_ms = std::max(runtime_ms, d.value("runtime", 0.0));
    (std::string(dir) == "read" ? r.read_latency : r.write_latency) = latency_of(d);
  }
  if (r.requests() == 0) throw std::runtime_error("fio completed no I/O");
  // job_runtime (ms, whole job) reads 0 for runs shorter than a millisecond.
  runtime_ms = std::max(runtime_ms, j.value("job_runtime", 0.0));
  if (runtime_ms <= 0) throw std::runtime_error("fio reports a run time of 0 ms (the job is too short to measure)");
  r.seconds = runtime_ms / 1000.0;
  // usr_cpu/sys_cpu: percent of the job's run time.
  const double cpu_fraction = (j.value("usr_cpu", 0.0) + j.value("sys_cpu", 0.0)) / 100.0;
  r.cpu_us_per_request = cpu_fraction * runtime_ms * 1000.0 / static_cast<double>(r.requests());
  return r;
}

FioRun run_fio(const BenchJob& job, const std::string& file, uint64_t region_bytes, bool direct) {
  FioRun run;
  char out_template[] = "/tmp/xbb-bench-fio-XXXXXX";
  const int out_fd = ::mkstemp(out_template);
  if (out_fd < 0) {
    run.error = "cannot create a temporary file for fio's output";
    return run;
  }
  ::close(out_fd);
  const std::string output = out_template;
  const std::string errors = output + ".err";
  run.command = fio_command(job, file, region_bytes, direct, output);

  std::vector<char*> argv;
  for (auto& a : run.command) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, errors.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, "fio", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    run.error = "cannot run fio (is it installed? apt-get install fio)";
  } else {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    std::string err = slurp(errors);
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      run.error = "fio failed" + (err.empty() ? std::string() : ": " + err);
    } else {
      try {
        // fio may print notes before the JSON document.
        std::string text = slurp(output);
        const auto start = text.find('{');
        if (start == std::string::npos) throw std::runtime_error("fio wrote no JSON");
        run.result = parse_fio_json(nlohmann::json::parse(text.substr(start)));
      } catch (const std::exception& e) {
        run.error = e.what();
      }
    }
  }
  ::unlink(output.c_str());
  ::unlink(errors.c_str());
  return run;
}

}  // namespace xbb::bench
