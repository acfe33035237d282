// xbb-bench's parts: the histogram's arithmetic, option parsing, /proc and
// fio JSON parsing, the report's ratios, and one short real run through xbbd
// (plus fio when it is installed).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "tools/BenchFio.hpp"
#include "tools/BenchHistogram.hpp"
#include "tools/BenchJob.hpp"
#include "tools/BenchReport.hpp"
#include "tools/BenchTarget.hpp"
#include "tools/BenchThreadCpu.hpp"
#include "tools/BenchXbbd.hpp"

namespace xbb::bench {
namespace {

std::optional<BenchJob> parse(std::vector<std::string> args) { return parse_bench_args(args); }

TEST(LatencyHistogram, EveryValueFallsInsideItsBucketWithinThreePercent) {
  for (uint64_t v : std::initializer_list<uint64_t>{0, 1, 31, 32, 33, 63, 64, 65, 1000, 4095, 4096, 123456789,
                     (uint64_t{1} << 40) + 12345, UINT64_MAX}) {
    const unsigned b = LatencyHistogram::bucket_of(v);
    ASSERT_LT(b, LatencyHistogram::kBuckets) << v;
    EXPECT_LE(LatencyHistogram::bucket_low(b), v) << v;
    EXPECT_GE(LatencyHistogram::bucket_high(b), v) << v;
    const double width = static_cast<double>(LatencyHistogram::bucket_high(b) - LatencyHistogram::bucket_low(b));
    EXPECT_LE(width, static_cast<double>(v) / 32.0) << v;
  }
  // Buckets tile the number line: each starts right after the previous one.
  for (unsigned b = 1; b < 400; ++b)
    EXPECT_EQ(LatencyHistogram::bucket_low(b), LatencyHistogram::bucket_high(b - 1) + 1) << b;
}

TEST(LatencyHistogram, PercentilesOfAKnownDistribution) {
  LatencyHistogram h;
  EXPECT_EQ(h.percentile(50), 0u);
  for (uint64_t us = 1; us <= 1000; ++us) h.record(us * 1000);
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_EQ(h.min(), 1000u);
  EXPECT_EQ(h.max(), 1000000u);
  EXPECT_NEAR(h.mean(), 500500.0, 0.5);
  EXPECT_NEAR(static_cast<double>(h.percentile(50)), 500000.0, 500000.0 / 32);
  EXPECT_NEAR(static_cast<double>(h.percentile(99)), 990000.0, 990000.0 / 32);
  EXPECT_GE(h.percentile(50), 500000u);  // the bucket's upper edge: never below the true value
  EXPECT_EQ(h.percentile(100), 1000000u);
  LatencyHistogram slow;
  for (int i = 0; i < 1000; ++i) slow.record(5000000);
  h.merge(slow);
  EXPECT_EQ(h.count(), 2000u);
  EXPECT_EQ(h.percentile(75), 5000000u);
  EXPECT_LE(h.percentile(25), 520000u);
}

TEST(BenchJob, DefaultsAndOptions) {
  auto job = parse({});
  ASSERT_TRUE(job);
  EXPECT_EQ(job->target, "ram:256M");
  EXPECT_EQ(job->pattern, Pattern::RandRead);
  EXPECT_EQ(job->block_size, 4096u);
  EXPECT_EQ(job->iodepth, 32u);
  job = parse({"--target", "/dev/shm/x.img", "--rw=randrw", "--rwmixread", "70", "--bs", "1m", "--iodepth=8",
               "--numjobs", "2", "--runtime", "2.5", "--size", "64M", "--direct", "0", "--copy-data", "--json",
               "--set", "notify_batch=8", "--set=no_coalesce_reqs=1", "--fault", "rate=0,latency=0us-2ms"});
  ASSERT_TRUE(job);
  EXPECT_EQ(job->target, "/dev/shm/x.img");
  EXPECT_EQ(job->pattern, Pattern::RandRW);
  EXPECT_EQ(job->rwmixread, 70u);
  EXPECT_EQ(job->block_size, 1048576u);
  EXPECT_EQ(job->iodepth, 8u);
  EXPECT_EQ(job->queues, 2u);
  EXPECT_DOUBLE_EQ(job->runtime_s, 2.5);
  EXPECT_EQ(job->size, 64ull << 20);
  EXPECT_EQ(job->direct, DirectMode::Off);
  EXPECT_FALSE(job->lean_frontend);
  EXPECT_TRUE(job->json);
  EXPECT_EQ(job->tunables.notify_batch, 8u);
  EXPECT_TRUE(job->tunables.no_coalesce_reqs);
  EXPECT_EQ(job->fault, "rate=0,latency=0us-2ms");
  EXPECT_FALSE(parse({"--help"}));
}

TEST(BenchJob, BadOptionsAreRefusedWithAMessage) {
  const std::vector<std::vector<std::string>> bad = {
      {"--bs", "512"},      {"--bs", "6k"},          {"--bs", "2m"},         {"--bs", "lots"},
      {"--rw", "trim"},     {"--iodepth", "0"},      {"--iodepth", "513"},   {"--queues", "0"},
      {"--runtime", "-1"},  {"--runtime", "soon"},   {"--runtime", "0"},     {"--rwmixread", "101"},
      {"--direct", "yes"},  {"--ring-order", "5"},   {"--bogus"},            {"--target"},
      {"--iodepth", "64", "--ring-order", "0"},      {"--size", "1k"},       {"--iodepth", "1x"},
      {"--set", "notify_batch"},                     {"--set", "bogus=1"},   {"--set", "notify_batch=-1"},
      {"--fault", "latency=fast"}};
  for (const auto& args : bad) {
    try {
      parse(args);
      ADD_FAILURE() << "accepted: " << args[0];
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()), "") << args[0];
    }
  }
}

TEST(ThreadCpu, ParsesProcStatWithAwkwardNames) {
  std::string comm;
  uint64_t ticks = 0;
  ASSERT_TRUE(parse_proc_stat("42 (we(ird) name)) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0", comm, ticks));
  EXPECT_EQ(comm, "we(ird) name)");
  EXPECT_EQ(ticks, 12u);
  EXPECT_FALSE(parse_proc_stat("garbage", comm, ticks));
  EXPECT_FALSE(parse_proc_stat("1 (x) S 1 2", comm, ticks));
}

TEST(ThreadCpu, SeesThisThreadWorking) {
  const pid_t self = current_tid();
  const auto threads = sample_threads();
  ASSERT_TRUE(threads.count(self));
  const uint64_t before = thread_cpu_ns(self);
  volatile uint64_t sink = 0;
  for (uint64_t i = 0; i < 50000000; ++i) sink = sink + i;
  EXPECT_GT(thread_cpu_ns(self), before);
  // The thread's time first: the process total read afterwards includes at
  // least that much (read the other way round, the thread keeps running in between).
  const uint64_t thread_total = thread_cpu_ns(self);
  EXPECT_GE(process_cpu_ns(), thread_total);
}

nlohmann::json fio_doc() {
  return nlohmann::json::parse(R"({"fio version":"fio-3.33","jobs":[{"jobname":"xbb-bench","error":0,
    "job_runtime":2000,"usr_cpu":10.0,"sys_cpu":30.0,
    "read":{"io_bytes":409600000,"total_ios":100000,"runtime":2000,
      "lat_ns":{"min":1000,"max":900000,"mean":20000.0,
                "percentile":{"50.000000":18000,"99.000000":60000,"99.900000":120000}}},
    "write":{"io_bytes":0,"total_ios":0,"runtime":0,"lat_ns":{"min":0,"max":0,"mean":0}}}]})");
}

TEST(Fio, ParsesItsJson) {
  const SideResult r = parse_fio_json(fio_doc());
  EXPECT_EQ(r.reads, 100000u);
  EXPECT_EQ(r.writes, 0u);
  EXPECT_DOUBLE_EQ(r.seconds, 2.0);
  EXPECT_DOUBLE_EQ(r.iops(), 50000.0);
  ASSERT_TRUE(r.read_latency);
  EXPECT_FALSE(r.write_latency);
  EXPECT_DOUBLE_EQ(r.read_latency->p50_us, 18.0);
  EXPECT_DOUBLE_EQ(r.read_latency->p999_us, 120.0);
  // 40% of 2 s over 100000 requests.
  EXPECT_DOUBLE_EQ(r.cpu_us_per_request, 8.0);
}

TEST(Fio, RefusesWhatIsNotAGoodRun) {
  EXPECT_THROW(parse_fio_json(nlohmann::json::object()), std::runtime_error);
  auto failed = fio_doc();
  failed["jobs"][0]["error"] = 5;
  EXPECT_THROW(parse_fio_json(failed), std::runtime_error);
  auto no_percentiles = fio_doc();
  no_percentiles["jobs"][0]["read"]["lat_ns"].erase("percentile");
  EXPECT_THROW(parse_fio_json(no_percentiles), std::runtime_error);
  auto idle = fio_doc();
  idle["jobs"][0]["read"]["total_ios"] = 0;
  EXPECT_THROW(parse_fio_json(idle), std::runtime_error);
}

TEST(Fio, CommandMatchesTheJob) {
  auto job = *parse({"--rw", "randrw", "--rwmixread", "30", "--bs", "64k", "--iodepth", "16", "--queues", "2",
                     "--runtime", "3"});
  const auto argv = fio_command(job, "/dev/shm/f.img", 1 << 20, true, "/tmp/out.json");
  auto has = [&](const std::string& a) { return std::find(argv.begin(), argv.end(), a) != argv.end(); };
  EXPECT_EQ(argv[0], "fio");
  for (const char* a : {"--filename=/dev/shm/f.img", "--ioengine=io_uring", "--rw=randrw", "--rwmixread=30",
                        "--bs=65536", "--iodepth=16", "--numjobs=2", "--direct=1", "--size=1048576",
                        "--runtime=3000ms", "--time_based", "--output-format=json", "--output=/tmp/out.json"})
    EXPECT_TRUE(has(a)) << a;
}

TEST(Report, RatiosAreXbbdOverFio) {
  Comparison c;
  c.xbbd.result.reads = 1000;
  c.xbbd.result.bytes = 1000 * 4096;
  c.xbbd.result.seconds = 1;
  c.xbbd.result.read_latency = Latency{0, 40, 100, 200, 300};
  c.xbbd.result.cpu_us_per_request = 6;
  c.xbbd.result.frontend_cpu_us_per_request = 2;
  EXPECT_FALSE(ratios(c));
  c.fio = FioRun{};
  c.fio->result.reads = 4000;
  c.fio->result.bytes = 4000 * 4096;
  c.fio->result.seconds = 1;
  c.fio->result.read_latency = Latency{0, 10, 50, 100, 200};
  c.fio->result.cpu_us_per_request = 2;
  const auto r = ratios(c);
  ASSERT_TRUE(r);
  EXPECT_DOUBLE_EQ(r->iops, 0.25);
  EXPECT_DOUBLE_EQ(r->bandwidth, 0.25);
  EXPECT_DOUBLE_EQ(r->p50, 4.0);
  EXPECT_DOUBLE_EQ(r->p99, 2.0);
  EXPECT_DOUBLE_EQ(r->backend_cpu, 3.0);
  EXPECT_DOUBLE_EQ(r->total_cpu, 4.0);
  const auto j = format_json(c);
  EXPECT_DOUBLE_EQ(j["ratio_xbbd_over_fio"]["iops"].get<double>(), 0.25);
  EXPECT_NE(format_table(c).find("xbbd / fio"), std::string::npos);
  c.fio->error = "fio failed";
  EXPECT_FALSE(ratios(c));
}

TEST(Target, PlansFioForEachKind) {
  BenchJob job;
  job.target = "ram:16M";
  EXPECT_EQ(plan_target(job).kind, TargetKind::Ram);
  job.target = "nbd:nbd+unix:///x?socket=/nonexistent";
  EXPECT_EQ(plan_target(job).kind, TargetKind::Other);
  job.target = "/nonexistent/disk.img";
  EXPECT_THROW(plan_target(job), std::invalid_argument);
  job.target = "/tmp";
  EXPECT_THROW(plan_target(job), std::invalid_argument);
  const std::string file = "/tmp/xbb-bench-test-" + std::to_string(::getpid()) + ".img";
  create_fio_file(file, 1 << 20);
  job.target = "file:" + file;
  const auto plan = plan_target(job);
  EXPECT_EQ(plan.kind, TargetKind::File);
  EXPECT_EQ(plan.path, file);
  EXPECT_EQ(plan.xbbd_direct, opens_direct(file));
  job.direct = DirectMode::Off;
  EXPECT_FALSE(plan_target(job).xbbd_direct);
  ::unlink(file.c_str());
}

// A real, short run: 1024 random 4 KiB reads and writes through the daemon.
TEST(XbbdRun, MovesEveryRequestAndAccountsForIt) {
  auto job = *parse({"--target", "ram:16M", "--rw", "randrw", "--bs", "4k", "--iodepth", "8", "--queues", "2",
                     "--runtime", "0", "--size", "4M", "--copy-data"});
  const XbbdRun run = run_xbbd(job, false);
  EXPECT_EQ(run.disk_bytes, 16ull << 20);
  EXPECT_EQ(run.region_bytes, 4ull << 20);
  EXPECT_EQ(run.result.requests(), 1024u);
  EXPECT_EQ(run.result.bytes, 4ull << 20);
  EXPECT_GT(run.result.reads, 0u);
  EXPECT_GT(run.result.writes, 0u);
  EXPECT_EQ(run.result.errors, 0u);
  EXPECT_TRUE(run.violations.empty());
  ASSERT_TRUE(run.result.read_latency);
  EXPECT_GT(run.result.read_latency->p50_us, 0);
  EXPECT_LE(run.result.read_latency->p50_us, run.result.read_latency->p999_us);
  EXPECT_GT(run.result.cpu_us_per_request, 0);
  ASSERT_TRUE(run.result.frontend_cpu_us_per_request);
  EXPECT_GT(*run.result.frontend_cpu_us_per_request, 0);
  EXPECT_FALSE(run.backend_threads.empty());
  // The daemon's own statistics saw the same requests (plus the prefill writes).
  ASSERT_TRUE(run.daemon_stats.value("ok", false)) << run.daemon_stats.dump();
  const auto& ops = run.daemon_stats["devices"][0]["stats"]["operations"];
  EXPECT_EQ(ops["read"].value("completed", 0u), run.result.reads);
  EXPECT_GE(ops["write"].value("completed", 0u), run.result.writes);
}

// The prefill (1 MiB writes, 8 per ring) must fit the guest as well as the job.
TEST(XbbdRun, LargeBlocksOnSeveralRingsAfterAPrefill) {
  auto job = *parse({"--target", "ram:16M", "--rw", "write", "--bs", "64k", "--iodepth", "4", "--queues", "2",
                     "--runtime", "0", "--size", "16M", "--prefill"});
  const XbbdRun run = run_xbbd(job, false);
  EXPECT_EQ(run.result.writes, 256u);
  EXPECT_EQ(run.result.errors, 0u);
  EXPECT_TRUE(run.violations.empty());
}

TEST(XbbdRun, RefusesATargetItCannotOpen) {
  auto job = *parse({"--target", "ram:12Q", "--runtime", "0", "--size", "64k"});
  EXPECT_THROW(run_xbbd(job, false), std::runtime_error);
}

TEST(FioRun, SameJobOnATmpfsFile) {
  if (std::system("fio --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "fio is not installed (apt-get install fio)";
  const std::string file = "/dev/shm/xbb-bench-test-" + std::to_string(::getpid()) + ".img";
  create_fio_file(file, 16 << 20);
  auto job = *parse({"--rw", "randread", "--bs", "4k", "--iodepth", "4", "--runtime", "0", "--size", "16M"});
  const FioRun run = run_fio(job, file, 16 << 20, false);
  ::unlink(file.c_str());
  ASSERT_EQ(run.error, "");
  EXPECT_EQ(run.result.reads, 4096u);
  EXPECT_EQ(run.result.bytes, 16ull << 20);
  EXPECT_TRUE(run.result.read_latency);
}

}  // namespace
}  // namespace xbb::bench
