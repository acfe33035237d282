#include "tools/BenchJob.hpp"

#include <charconv>
#include <cmath>
#include <stdexcept>

#include "backend/engine/FaultSpec.hpp"
#include "storage/SizeParser.hpp"

namespace xbb::bench {
namespace {

const char* kUsage = R"(Usage: xbb-bench [OPTIONS]

Runs an fio-like job through xbbd on a simulated Xen host (a software blkfront
in the same process), then the same job with fio straight on the storage, and
prints both side by side with the ratio xbbd/fio.

  --target T        storage: a file, a block device or ram:SIZE (default ram:256M).
                    For ram: targets fio runs on a tmpfs file of the same size.
  --rw P            read|write|randread|randwrite|randrw (default randread)
  --rwmixread N     percent of reads for randrw (default 50)
  --bs SIZE         block size, 4k..1m, a multiple of 4k (default 4k)
  --iodepth N       requests in flight per queue (default 32)
  --queues N        rings, each with iodepth requests; fio runs N jobs
                    (--numjobs is the same option) (default 1)
  --runtime S       seconds to run (default 5; 0: move --size bytes instead)
  --size SIZE       region of the disk used (default: all); with --runtime 0,
                    the bytes to move
  --ring-order N    ring page order (default: smallest ring holding iodepth)
  --direct auto|1|0 O_DIRECT for fio and xbbd's file storage (default auto:
                    on when the file system allows it; tmpfs does from Linux 6.6)
  --no-persistent   do not use persistent grants (grant copy for every page)
  --set NAME=VALUE  an xbbd tunable for the device, as `xbbctl set` takes it
  --fault SPEC      fault injection in xbbd's storage, as `xbbctl fault` takes it
                    (e.g. rate=0,latency=0us-2ms); fio runs without it
                    (e.g. notify_batch=8); may be repeated
  --copy-data       the frontend copies read data out of its pages like the
                    tests do (default: lean, it does not)
  --prefill / --no-prefill
                    write the region before measuring (default: for ram:)
  --no-fio          only run xbbd
  --fio-file PATH   fio's tmpfs file for ram: targets
  --seed N          random offsets seed (default 1)
  --json            print JSON instead of the table
)";

uint64_t parse_uint(const std::string& option, const std::string& text) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty())
    throw std::invalid_argument(option + ": '" + text + "' is not a whole number");
  return v;
}

uint64_t parse_size_option(const std::string& option, const std::string& text) {
  auto v = storage::parse_size(text);
  if (!v) throw std::invalid_argument(option + ": '" + text + "' is not a size (digits with K, M, G or T)");
  return *v;
}

Pattern parse_pattern(const std::string& text) {
  if (text == "read") return Pattern::Read;
  if (text == "write") return Pattern::Write;
  if (text == "randread") return Pattern::RandRead;
  if (text == "randwrite") return Pattern::RandWrite;
  if (text == "randrw") return Pattern::RandRW;
  throw std::invalid_argument("--rw: '" + text + "' is not one of read, write, randread, randwrite, randrw");
}

}  // namespace

const char* pattern_name(Pattern p) {
  switch (p) {
    case Pattern::Read: return "read";
    case Pattern::Write: return "write";
    case Pattern::RandRead: return "randread";
    case Pattern::RandWrite: return "randwrite";
    case Pattern::RandRW: return "randrw";
  }
  return "?";
}

bool pattern_is_random(Pattern p) { return p == Pattern::RandRead || p == Pattern::RandWrite || p == Pattern::RandRW; }

const char* bench_usage() { return kUsage; }

std::optional<BenchJob> parse_bench_args(const std::vector<std::string>& args) {
  BenchJob job;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i];
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); name.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto arg = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= args.size()) throw std::invalid_argument(name + " needs a value");
      return args[++i];
    };
    if (name == "--help" || name == "-h") return std::nullopt;
    if (name == "--target") {
      job.target = arg();
      if (job.target.empty()) throw std::invalid_argument("--target: empty");
    } else if (name == "--rw") {
      job.pattern = parse_pattern(arg());
    } else if (name == "--rwmixread") {
      const auto v = parse_uint(name, arg());
      if (v > 100) throw std::invalid_argument("--rwmixread: a percentage, 0..100");
      job.rwmixread = static_cast<unsigned>(v);
    } else if (name == "--bs") {
      const auto v = parse_size_option(name, arg());
      if (v < 4096 || v > 1048576 || v % 4096 != 0)
        throw std::invalid_argument("--bs: must be a multiple of 4k between 4k and 1m");
      job.block_size = static_cast<uint32_t>(v);
    } else if (name == "--iodepth") {
      const auto v = parse_uint(name, arg());
      if (v < 1 || v > 512) throw std::invalid_argument("--iodepth: 1..512 (the largest ring holds 512)");
      job.iodepth = static_cast<unsigned>(v);
    } else if (name == "--queues" || name == "--numjobs") {
      const auto v = parse_uint(name, arg());
      if (v < 1 || v > 16) throw std::invalid_argument(name + ": 1..16");
      job.queues = static_cast<unsigned>(v);
    } else if (name == "--runtime") {
      const std::string text = arg();
      double v = 0;
      try {
        size_t used = 0;
        v = std::stod(text, &used);
        if (used != text.size()) throw std::invalid_argument("");
      } catch (const std::exception&) {
        throw std::invalid_argument("--runtime: '" + text + "' is not a number of seconds");
      }
      if (!std::isfinite(v) || v < 0 || v > 86400) throw std::invalid_argument("--runtime: 0..86400 seconds");
      job.runtime_s = v;
    } else if (name == "--size") {
      job.size = parse_size_option(name, arg());
    } else if (name == "--ring-order") {
      const auto v = parse_uint(name, arg());
      if (v > 4) throw std::invalid_argument("--ring-order: 0..4");
      job.ring_page_order = static_cast<unsigned>(v);
    } else if (name == "--direct") {
      const std::string v = arg();
      if (v == "auto") job.direct = DirectMode::Auto;
      else if (v == "1") job.direct = DirectMode::On;
      else if (v == "0") job.direct = DirectMode::Off;
      else throw std::invalid_argument("--direct: auto, 1 or 0");
    } else if (name == "--no-persistent") {
      job.persistent_grants = false;
    } else if (name == "--set") {
      const std::string v = arg();
      const auto eq = v.find('=');
      if (eq == std::string::npos) throw std::invalid_argument("--set: NAME=VALUE, not '" + v + "'");
      if (auto error = job.tunables.set(v.substr(0, eq), v.substr(eq + 1))) throw std::invalid_argument("--set: " + *error);
    } else if (name == "--fault") {
      job.fault = arg();
      const auto parsed = backend::parse_fault_spec(job.fault);
      if (auto* error = std::get_if<std::string>(&parsed)) throw std::invalid_argument("--fault: " + *error);
    } else if (name == "--copy-data") {
      job.lean_frontend = false;
    } else if (name == "--prefill") {
      job.prefill = true;
    } else if (name == "--no-prefill") {
      job.prefill = false;
    } else if (name == "--no-fio") {
      job.run_fio = false;
    } else if (name == "--fio-file") {
      job.fio_file = arg();
    } else if (name == "--seed") {
      job.seed = parse_uint(name, arg());
    } else if (name == "--json") {
      job.json = true;
    } else {
      throw std::invalid_argument("unknown option '" + args[i] + "'");
    }
  }
  if (job.runtime_s == 0 && job.size == 0) throw std::invalid_argument("--runtime 0 needs --size (bytes to move)");
  if (job.size != 0 && job.size < job.block_size) throw std::invalid_argument("--size is smaller than --bs");
  if (job.ring_page_order && (32u << *job.ring_page_order) < job.iodepth)
    throw std::invalid_argument("--ring-order: a ring of that order holds fewer than --iodepth requests");
  return job;
}

}  // namespace xbb::bench
