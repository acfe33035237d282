#include "tools/BenchXbbd.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <random>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <xen/io/blkif.h>

#include "backend/daemon/Daemon.hpp"
#include "storage/Target.hpp"
#include "tests/frontend/SimWorld.hpp"
#include "tools/BenchHistogram.hpp"
#include "tools/BenchThreadCpu.hpp"

namespace xbb::bench {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using frontend::BlkCompletion;
using frontend::BlkRequest;

constexpr uint32_t kPage = 4096;
constexpr xs::DomId kGuest = 1;
constexpr uint32_t kDevid = 51712;  // xvda
// With this long without a single completion the backend is stuck: give up.
constexpr auto kStallLimit = 30s;

uint64_t ns_since(Clock::time_point start, Clock::time_point now) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now - start).count());
}

Latency summarise(const LatencyHistogram& h) {
  Latency l;
  l.mean_us = h.mean() / 1000.0;
  l.p50_us = static_cast<double>(h.percentile(50)) / 1000.0;
  l.p99_us = static_cast<double>(h.percentile(99)) / 1000.0;
  l.p999_us = static_cast<double>(h.percentile(99.9)) / 1000.0;
  l.max_us = static_cast<double>(h.max()) / 1000.0;
  return l;
}

// Stops the daemon and joins its control thread on every way out, before the
// guest's memory (declared earlier) goes away.
struct DaemonThread {
  backend::Daemon& daemon;
  std::thread thread;
  std::atomic<pid_t> tid{0};
  explicit DaemonThread(backend::Daemon& d) : daemon(d) {
    thread = std::thread([this] {
      tid = current_tid();
      daemon.run();
    });
  }
  ~DaemonThread() {
    daemon.request_stop();
    if (thread.joinable()) thread.join();
  }
};

// Waits for the completions of everything in flight; throws when the backend
// stops answering.
template <typename OnCompletion>
void poll_some(frontend::SoftBlkfront& disk, Clock::time_point& last_progress, OnCompletion&& on_completion) {
  auto done = disk.poll(1000ms);
  const auto now = Clock::now();
  if (done.empty()) {
    if (now - last_progress > kStallLimit)
      throw std::runtime_error(fmt::format("no completion for {} s with {} requests in flight",
                                           std::chrono::duration_cast<std::chrono::seconds>(kStallLimit).count(),
                                           disk.in_flight()));
    return;
  }
  last_progress = now;
  for (auto& c : done) on_completion(c, now);
}

void prefill(frontend::SoftBlkfront& disk, uint64_t region_bytes, unsigned queues) {
  const uint32_t chunk = std::min<uint32_t>(1u << 20, disk.max_request_sectors() / 8 * kPage);
  BlkRequest write;
  write.kind = BlkRequest::Kind::Write;
  uint64_t next = 0;
  unsigned q = 0;
  auto last_progress = Clock::now();
  uint64_t failed = 0;
  while (next < region_bytes || disk.in_flight() > 0) {
    while (next < region_bytes && disk.in_flight() < 8ull * queues) {
      const uint64_t length = std::min<uint64_t>(chunk, region_bytes - next);
      write.data.resize(length);
      write.sector = next / 512;
      write.queue = q++ % queues;
      if (!disk.submit(write)) break;
      next += length;
    }
    poll_some(disk, last_progress, [&](const BlkCompletion& c, Clock::time_point) {
      if (c.status != BLKIF_RSP_OKAY) ++failed;
    });
  }
  if (failed) throw std::runtime_error(fmt::format("prefill: {} writes failed", failed));
}

}  // namespace

XbbdRun run_xbbd(const BenchJob& job, bool direct_io) {
  XbbdRun out;
  const unsigned pages_per_request = job.block_size / kPage;
  const size_t working_set = size_t{job.iodepth} * pages_per_request;  // pages in flight per ring
  unsigned order = 0;
  if (job.ring_page_order) {
    order = *job.ring_page_order;
  } else {
    while ((32u << order) < job.iodepth) ++order;
  }

  frontend::SimWorld world;
  auto dom0 = world.connect(0);
  backend::DaemonOptions options;
  options.vbd.max_queues = job.queues;
  options.vbd.direct_io = direct_io;
  options.vbd.persistent_grants = job.persistent_grants;
  options.vbd.tunables = job.tunables;
  options.vbd.fault_injection = !job.fault.empty();
  // Enough persistent grants and bounce pages for the whole working set, so
  // a run measures the steady state rather than running out of either.
  options.vbd.persistent_grants_per_queue = std::max(options.vbd.persistent_grants_per_queue, working_set + 64);
  options.vbd.bounce_pages_per_queue = std::max(options.vbd.bounce_pages_per_queue, working_set);

  std::unique_ptr<frontend::InProcessGuest> guest;
  std::unique_ptr<frontend::SoftBlkfront> disk;
  // As xbbd does (XbbdMain): the opener applies direct_io to file targets.
  backend::Daemon daemon(*dom0, world.hypervisor(), options, [direct_io](const std::string& t, bool ro) {
    storage::OpenOptions o;
    o.read_only = ro;
    o.direct_io = direct_io;
    return storage::open_target(t, o);
  });
  DaemonThread control(daemon);

  // The job's pages plus the prefill's (8 requests of 1 MiB per ring, and
  // with persistent grants the frontend keeps whatever its pool grew to).
  const uint32_t guest_pages = static_cast<uint32_t>(
      job.queues * (working_set + job.iodepth * 2 + (1u << order) + 64 + 8 * (256 + 2)) + 2048);
  guest = world.add_guest(kGuest, guest_pages);
  frontend::VbdSpec spec;
  spec.domid = kGuest;
  spec.devid = kDevid;
  spec.target = job.target;
  world.toolstack().add_vbd(spec);
  if (!world.toolstack().wait_backend_state(kGuest, kDevid, xs::XenbusState::InitWait, 10s))
    throw std::runtime_error("xbbd did not take the disk (no InitWait within 10 s)");
  // Like the hotplug script: the storage is open once hotplug-status says so.
  const std::string backend_dir = fmt::format("/local/domain/0/backend/vbd/{}/{}", kGuest, kDevid);
  auto& toolstack_xs = world.toolstack().xs();
  if (!world.toolstack().wait_node(backend_dir + "/hotplug-status", true, 60s))
    throw std::runtime_error("xbbd did not open the storage within 60 s");
  if (toolstack_xs.read(xs::kNoTransaction, backend_dir + "/hotplug-status") != "connected")
    throw std::runtime_error("xbbd refused the target: " +
                             toolstack_xs.read(xs::kNoTransaction, backend_dir + "/hotplug-error").value_or("(no reason given)"));

  if (!job.fault.empty()) {
    // As `xbbctl fault` does, through the control thread.
    std::promise<nlohmann::json> answer;
    auto answered = answer.get_future();
    daemon.post([&] {
      answer.set_value(daemon.handle_command(
          {{"command", "fault"}, {"device", fmt::format("{}/{}", kGuest, kDevid)}, {"spec", job.fault}}));
    });
    const auto reply = answered.get();
    if (!reply.value("ok", false)) throw std::runtime_error("--fault: " + reply.dump());
  }

  frontend::FrontendConfig config;
  config.ring_page_order = order;
  config.queues = job.queues;
  config.persistent_grants = job.persistent_grants;
  config.move_data = !job.lean_frontend;
  disk = guest->disk(kDevid, config);
  disk->connect();
  const auto& be = disk->backend();
  out.disk_bytes = be.sectors * 512;
  out.ring_page_order = be.ring_page_order;
  out.persistent = be.persistent;
  if (be.queues != job.queues)
    throw std::runtime_error(fmt::format("xbbd offered {} queues, the job wants {}", be.queues, job.queues));
  if ((32u << be.ring_page_order) < job.iodepth)
    throw std::runtime_error(fmt::format("the ring (order {}) holds fewer than {} requests", be.ring_page_order, job.iodepth));
  if (job.block_size / 512 > disk->max_request_sectors())
    throw std::runtime_error(fmt::format("--bs {} is larger than one request can carry ({} bytes)", job.block_size,
                                         disk->max_request_sectors() * 512ull));
  if (be.sector_size > job.block_size || job.block_size % be.sector_size != 0)
    throw std::runtime_error(fmt::format("--bs {} is not a multiple of the disk's {}-byte sectors", job.block_size,
                                         be.sector_size));
  out.region_bytes = job.size ? std::min(job.size, out.disk_bytes) : out.disk_bytes;
  out.region_bytes -= out.region_bytes % job.block_size;
  if (out.region_bytes < job.block_size) throw std::runtime_error("the disk is smaller than one block");

  const bool is_ram = job.target.rfind("ram:", 0) == 0;
  if (job.prefill.value_or(is_ram)) prefill(*disk, out.region_bytes, job.queues);

  // The measured phase.
  const uint64_t blocks = out.region_bytes / job.block_size;
  std::mt19937_64 rng(job.seed);
  std::uniform_int_distribution<uint64_t> pick_block(0, blocks - 1);
  std::uniform_int_distribution<unsigned> pick_percent(0, 99);
  std::vector<uint64_t> cursor(job.queues);  // sequential jobs: one stream per ring, spread over the region
  for (unsigned q = 0; q < job.queues; ++q) cursor[q] = blocks * q / job.queues;
  std::vector<unsigned> in_flight(job.queues, 0);
  struct Pending {
    Clock::time_point start;
    unsigned queue;
    bool read;
  };
  std::unordered_map<uint64_t, Pending> pending;
  pending.reserve(size_t{job.iodepth} * job.queues * 2);
  BlkRequest read;
  read.kind = BlkRequest::Kind::Read;
  read.sectors = job.block_size / 512;
  BlkRequest write;
  write.kind = BlkRequest::Kind::Write;
  write.data.assign(job.block_size, std::byte{0x5a});
  LatencyHistogram read_latency, write_latency;
  SideResult& r = out.result;
  r.name = "xbbd";

  const pid_t self = current_tid();
  const pid_t control_tid = control.tid.load();
  const auto threads_before = sample_threads();
  const uint64_t process_before = process_cpu_ns();
  const uint64_t frontend_before = thread_cpu_ns(self);
  const uint64_t control_before = thread_cpu_ns(control_tid);
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(job.runtime_s));
  uint64_t issued_bytes = 0;
  auto last_progress = start;
  auto now = start;
  for (;;) {
    const bool submitting = job.runtime_s > 0 ? now < deadline : issued_bytes < job.size;
    if (submitting) {
      for (unsigned q = 0; q < job.queues; ++q) {
        while (in_flight[q] < job.iodepth && (job.runtime_s > 0 || issued_bytes < job.size)) {
          bool is_read = false;
          uint64_t block = 0;
          switch (job.pattern) {
            case Pattern::Read: is_read = true; [[fallthrough]];
            case Pattern::Write:
              block = cursor[q];
              cursor[q] = (cursor[q] + 1) % blocks;
              break;
            case Pattern::RandRead: is_read = true; [[fallthrough]];
            case Pattern::RandWrite: block = pick_block(rng); break;
            case Pattern::RandRW:
              is_read = pick_percent(rng) < job.rwmixread;
              block = pick_block(rng);
              break;
          }
          BlkRequest& request = is_read ? read : write;
          request.sector = block * (job.block_size / 512);
          request.queue = q;
          const auto submitted = Clock::now();
          const auto handle = disk->submit(request);
          if (!handle) break;
          pending.emplace(*handle, Pending{submitted, q, is_read});
          ++in_flight[q];
          issued_bytes += job.block_size;
        }
      }
    }
    if (pending.empty() && !submitting) break;
    poll_some(*disk, last_progress, [&](const BlkCompletion& c, Clock::time_point at) {
      auto it = pending.find(c.handle);
      if (it == pending.end()) return;
      const Pending p = it->second;
      pending.erase(it);
      --in_flight[p.queue];
      if (c.status != BLKIF_RSP_OKAY) {
        ++r.errors;
        return;
      }
      (p.read ? read_latency : write_latency).record(ns_since(p.start, at));
      ++(p.read ? r.reads : r.writes);
      r.bytes += job.block_size;
    });
    now = Clock::now();
  }
  const auto end = Clock::now();
  const uint64_t frontend_ns = thread_cpu_ns(self) - frontend_before;
  const uint64_t control_ns = thread_cpu_ns(control_tid) - control_before;
  const uint64_t process_ns = process_cpu_ns() - process_before;
  const auto threads_after = sample_threads();

  r.seconds = std::chrono::duration<double>(end - start).count();
  if (read_latency.count()) r.read_latency = summarise(read_latency);
  if (write_latency.count()) r.write_latency = summarise(write_latency);
  const double requests = static_cast<double>(std::max<uint64_t>(1, r.requests() + r.errors));
  const uint64_t backend_ns = process_ns > frontend_ns + control_ns ? process_ns - frontend_ns - control_ns : 0;
  r.cpu_us_per_request = static_cast<double>(backend_ns) / 1000.0 / requests;
  r.frontend_cpu_us_per_request = static_cast<double>(frontend_ns) / 1000.0 / requests;
  const double wall_ns = std::max(1.0, r.seconds * 1e9);
  out.frontend_utilisation = static_cast<double>(frontend_ns) / wall_ns;
  out.backend_utilisation = static_cast<double>(backend_ns) / wall_ns;
  out.control_cpu_s = static_cast<double>(control_ns) / 1e9;
  double busiest_worker = 0;
  for (const auto& [tid, t] : threads_after) {
    if (tid == self || tid == control_tid) continue;
    auto before = threads_before.find(tid);
    const uint64_t used = t.cpu_ns - (before == threads_before.end() ? 0 : before->second.cpu_ns);
    ThreadShare share{fmt::format("{} (tid {})", t.name, tid), static_cast<double>(used) / 1e9,
                      static_cast<double>(used) / wall_ns};
    busiest_worker = std::max(busiest_worker, share.utilisation);
    out.backend_threads.push_back(share);
  }
  // A thread near 100% of one core is the limit; if neither is, both spend
  // their time waiting (for each other, for storage, or for a CPU on a busy
  // machine).
  if (out.frontend_utilisation >= 0.85 && out.frontend_utilisation >= busiest_worker) {
    out.limited_by = "frontend";
  } else if (busiest_worker >= 0.85) {
    out.limited_by = "backend";
  } else {
    out.limited_by = fmt::format("neither thread is CPU-bound (frontend {:.0f}%, busiest backend thread {:.0f}%)",
                                 out.frontend_utilisation * 100, busiest_worker * 100);
  }

  std::promise<nlohmann::json> stats;
  auto stats_future = stats.get_future();
  daemon.post([&] { stats.set_value(daemon.handle_command({{"command", "stats"}})); });
  if (stats_future.wait_for(10s) == std::future_status::ready) out.daemon_stats = stats_future.get();
  out.violations = disk->violations();
  return out;
}

}  // namespace xbb::bench
