#include "tools/BenchReport.hpp"

#include <fmt/format.h>

namespace xbb::bench {
namespace {

double ratio(double a, double b) { return b > 0 ? a / b : 0; }

std::string size_text(uint64_t bytes) {
  if (bytes >= (1ull << 30) && bytes % (1ull << 30) == 0) return fmt::format("{}G", bytes >> 30);
  if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0) return fmt::format("{}M", bytes >> 20);
  if (bytes >= (1ull << 10) && bytes % (1ull << 10) == 0) return fmt::format("{}k", bytes >> 10);
  return fmt::format("{}", bytes);
}

std::string row(const std::string& name, const SideResult& s) {
  const auto& l = s.main_latency();
  std::string out = fmt::format("  {:<20} {:>10.0f} {:>9.1f}", name, s.iops(), s.mib_per_s());
  if (l) {
    out += fmt::format(" {:>8.1f} {:>8.1f} {:>8.1f} {:>8.1f}", l->mean_us, l->p50_us, l->p99_us, l->p999_us);
  } else {
    out += fmt::format(" {:>8} {:>8} {:>8} {:>8}", "-", "-", "-", "-");
  }
  out += fmt::format(" {:>10.2f}", s.cpu_us_per_request);
  if (s.frontend_cpu_us_per_request) out += fmt::format(" {:>10.2f}", *s.frontend_cpu_us_per_request);
  return out;
}

nlohmann::json job_json(const BenchJob& j) {
  nlohmann::json out = {{"target", j.target},       {"rw", pattern_name(j.pattern)},
                        {"bs", j.block_size},       {"iodepth", j.iodepth},
                        {"queues", j.queues},       {"runtime_s", j.runtime_s},
                        {"size", j.size},           {"persistent_grants", j.persistent_grants},
                        {"lean_frontend", j.lean_frontend}, {"seed", j.seed}};
  if (j.pattern == Pattern::RandRW) out["rwmixread"] = j.rwmixread;
  for (const auto& [name, value] : j.tunables.list()) out["tunables"][name] = value;
  if (!j.fault.empty()) out["fault"] = j.fault;
  return out;
}

}  // namespace

std::optional<Ratios> ratios(const Comparison& c) {
  if (!c.fio || !c.fio->error.empty()) return std::nullopt;
  const SideResult& x = c.xbbd.result;
  const SideResult& f = c.fio->result;
  Ratios r;
  r.iops = ratio(x.iops(), f.iops());
  r.bandwidth = ratio(x.mib_per_s(), f.mib_per_s());
  const auto& xl = x.main_latency();
  const auto& fl = f.main_latency();
  if (xl && fl) {
    r.p50 = ratio(xl->p50_us, fl->p50_us);
    r.p99 = ratio(xl->p99_us, fl->p99_us);
    r.p999 = ratio(xl->p999_us, fl->p999_us);
  }
  r.backend_cpu = ratio(x.cpu_us_per_request, f.cpu_us_per_request);
  r.total_cpu = ratio(x.cpu_us_per_request + x.frontend_cpu_us_per_request.value_or(0), f.cpu_us_per_request);
  return r;
}

std::string format_table(const Comparison& c) {
  const BenchJob& j = c.job;
  std::string out = fmt::format("xbb-bench: {} {} iodepth {} x {} queue(s), {}, region {}\n", size_text(j.block_size),
                                pattern_name(j.pattern), j.iodepth, j.queues,
                                j.runtime_s > 0 ? fmt::format("{} s", j.runtime_s) : "size " + size_text(j.size),
                                size_text(c.xbbd.region_bytes));
  out += fmt::format("  storage: {}\n", c.storage_description);
  out += fmt::format("  xbbd: simulated Xen host, software blkfront on one thread, ring order {}, persistent grants {}, "
                     "frontend {}\n",
                     c.xbbd.ring_page_order, c.xbbd.persistent ? "yes" : "no",
                     j.lean_frontend ? "lean (does not copy data)" : "copies data like the tests");
  std::string tunables;
  for (const auto& [name, value] : j.tunables.list()) tunables += fmt::format(" {}={}", name, value);
  out += fmt::format("  xbbd tunables:{}\n", tunables);
  if (!j.fault.empty()) out += fmt::format("  xbbd fault injection: {} (fio runs without it)\n", j.fault);
  out += fmt::format("  host: {}\n\n", c.host_note);
  out += fmt::format("  {:<20} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}\n", "", "IOPS", "MiB/s", "mean us",
                     "p50 us", "p99 us", "p99.9 us", "CPU us/req", "front us/req");
  out += row("xbbd", c.xbbd.result) + "\n";
  if (c.fio && c.fio->error.empty()) {
    out += row("fio io_uring", c.fio->result) + "\n";
    const auto r = *ratios(c);
    out += fmt::format("  {:<20} {:>9.2f}x {:>8.2f}x {:>8} {:>7.2f}x {:>7.2f}x {:>7.2f}x {:>9.2f}x (with frontend {:.2f}x)\n",
                       "xbbd / fio", r.iops, r.bandwidth, "", r.p50, r.p99, r.p999, r.backend_cpu, r.total_cpu);
    out += "  (IOPS and MiB/s below 1x: xbbd is slower; latency and CPU above 1x: xbbd costs more. fio's CPU is its\n"
           "   whole job, submitting and reaping included; xbbd's CPU column is the daemon, the last its frontend.)\n";
  } else if (c.fio) {
    out += fmt::format("  fio: FAILED: {}\n", c.fio->error);
  } else {
    out += fmt::format("  fio: not run ({})\n", c.fio_skipped);
  }
  if (c.xbbd.result.errors) out += fmt::format("  xbbd: {} requests FAILED\n", c.xbbd.result.errors);
  for (const auto& v : c.xbbd.violations) out += "  xbbd: protocol violation: " + v + "\n";
  out += fmt::format("\n  limited by: {}\n", c.xbbd.limited_by);
  out += fmt::format("  CPU while measuring: frontend thread {:.0f}%, backend {:.0f}% of a core; daemon threads:",
                     c.xbbd.frontend_utilisation * 100, c.xbbd.backend_utilisation * 100);
  for (const auto& t : c.xbbd.backend_threads) out += fmt::format(" {} {:.0f}%", t.name, t.utilisation * 100);
  out += "\n";
  if (c.fio) {
    out += "  fio command:";
    for (const auto& a : c.fio->command) out += " " + a;
    out += "\n";
  }
  return out;
}

nlohmann::json format_json(const Comparison& c) {
  nlohmann::json out;
  out["job"] = job_json(c.job);
  out["storage"] = c.storage_description;
  out["host"] = c.host_note;
  auto x = to_json(c.xbbd.result);
  x["disk_bytes"] = c.xbbd.disk_bytes;
  x["region_bytes"] = c.xbbd.region_bytes;
  x["ring_page_order"] = c.xbbd.ring_page_order;
  x["persistent_grants"] = c.xbbd.persistent;
  x["frontend_utilisation"] = c.xbbd.frontend_utilisation;
  x["backend_utilisation"] = c.xbbd.backend_utilisation;
  x["control_thread_cpu_s"] = c.xbbd.control_cpu_s;
  x["limited_by"] = c.xbbd.limited_by;
  x["violations"] = c.xbbd.violations;
  nlohmann::json threads = nlohmann::json::array();
  for (const auto& t : c.xbbd.backend_threads)
    threads.push_back({{"name", t.name}, {"cpu_s", t.cpu_s}, {"utilisation", t.utilisation}});
  x["backend_threads"] = threads;
  x["daemon_stats"] = c.xbbd.daemon_stats;
  out["xbbd"] = x;
  if (c.fio) {
    out["fio_command"] = c.fio->command;
    if (c.fio->error.empty()) {
      out["fio"] = to_json(c.fio->result);
    } else {
      out["fio_error"] = c.fio->error;
    }
  } else {
    out["fio_skipped"] = c.fio_skipped;
  }
  if (auto r = ratios(c)) {
    out["ratio_xbbd_over_fio"] = {{"iops", r->iops},         {"bandwidth", r->bandwidth},
                                  {"p50", r->p50},           {"p99", r->p99},
                                  {"p99_9", r->p999},        {"backend_cpu_per_request", r->backend_cpu},
                                  {"total_cpu_per_request", r->total_cpu}};
  }
  return out;
}

}  // namespace xbb::bench
