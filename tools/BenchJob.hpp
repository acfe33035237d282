// What xbb-bench runs: one fio-like job, parsed from the command line. The
// same job is run through xbbd and handed to fio, so every field here has a
// fio equivalent (see BenchFio.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "backend/engine/Tunables.hpp"

namespace xbb::bench {

enum class Pattern { Read, Write, RandRead, RandWrite, RandRW };

const char* pattern_name(Pattern p);  // fio's --rw spelling
bool pattern_is_random(Pattern p);

// How fio (and xbbd's file storage) open the target.
enum class DirectMode { Auto, On, Off };

struct BenchJob {
  std::string target = "ram:256M";
  Pattern pattern = Pattern::RandRead;
  unsigned rwmixread = 50;         // percent of reads for randrw
  uint32_t block_size = 4096;      // bytes, a multiple of 4096
  unsigned iodepth = 32;           // per queue (fio: per job)
  unsigned queues = 1;             // rings (fio: numjobs)
  double runtime_s = 5;            // 0: run until `size` bytes moved
  uint64_t size = 0;               // region of the disk used (0: all of it); with runtime 0, bytes to move
  std::optional<unsigned> ring_page_order;  // default: smallest ring that holds iodepth
  DirectMode direct = DirectMode::Auto;
  bool persistent_grants = true;
  backend::Tunables tunables;      // xbbd's per-device tunables (--set)
  std::string fault;               // xbbd's fault injection (--fault, as `xbbctl fault` takes it); fio gets none
  bool lean_frontend = true;       // the frontend skips copying read data out (see SoftBlkfront)
  std::optional<bool> prefill;     // write the region before measuring (default: for ram: targets)
  bool run_fio = true;
  std::string fio_file;            // fio's file for ram: targets (default /dev/shm/xbb-bench-PID.img)
  bool json = false;
  uint64_t seed = 1;
};

// Parses argv; throws std::invalid_argument with a message naming the bad
// option. Returns nullopt after printing the help (--help).
std::optional<BenchJob> parse_bench_args(const std::vector<std::string>& args);

const char* bench_usage();

}  // namespace xbb::bench
