#include "backend/engine/FastClock.hpp"

#include <cmath>
#include <mutex>

#include <fmt/format.h>

namespace xbb::backend {

TscScale TscScale::through(uint64_t tsc0, uint64_t ns0, uint64_t tsc1, uint64_t ns1) {
  TscScale scale;
  if (tsc1 <= tsc0 || ns1 <= ns0) return scale;
  scale.base_tsc = tsc1;
  scale.base_ns = ns1;
  scale.mult = static_cast<uint64_t>((static_cast<unsigned __int128>(ns1 - ns0) << 32) / (tsc1 - tsc0));
  return scale;
}

namespace fast_clock {

std::atomic<const TscScale*> g_tsc_scale{nullptr};

namespace {

#if defined(__x86_64__) || defined(__i386__)
constexpr bool kHaveTsc = true;
uint64_t read_tsc() { return __rdtsc(); }
#else
constexpr bool kHaveTsc = false;
uint64_t read_tsc() { return 0; }
#endif

// clock_gettime costing more than this is a system call, not the vDSO.
constexpr double kSystemCallNs = 1000;
constexpr uint64_t kCalibrationWindowNs = 20'000'000;
constexpr int kCalibrationAttempts = 3;

struct Point {
  uint64_t tsc;
  uint64_t ns;
};

// The TSC read on both sides of the (possibly slow) clock_gettime, averaged,
// so the pair describes one instant.
Point sample() {
  const uint64_t before = read_tsc();
  const uint64_t ns = monotonic_ns();
  const uint64_t after = read_tsc();
  return {before + (after - before) / 2, ns};
}

void sleep_ns(uint64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  while (::nanosleep(&ts, &ts) != 0) {
  }
}

// The clock_gettime that ends the measurement is part of it: `calls` keeps its
// share small (64 slow clock_gettimes take ~4 ms in the lab's dom0).
template <typename Read>
double cost_ns(Read read, int calls) {
  volatile uint64_t sink = 0;
  const uint64_t start = monotonic_ns();
  for (int i = 0; i < calls; ++i) sink = sink + read();
  return static_cast<double>(monotonic_ns() - start) / calls;
}

FastClockChoice choose() {
  FastClockChoice choice;
  choice.clock_gettime_ns = cost_ns(monotonic_ns, 64);
  if (kHaveTsc) choice.rdtsc_ns = cost_ns(read_tsc, 8192);
  choice.reason = reason_to_keep_clock_gettime(kHaveTsc, choice.clock_gettime_ns, choice.rdtsc_ns);
  if (!choice.reason.empty()) return choice;
  // A PV domain's clock_gettime may lag behind another vCPU's for a while
  // (it is clamped to the last value seen), which can make one pair of
  // windows disagree: measured in 1 of 7 per-disk processes in the lab.
  TscScale scale;
  for (int attempt = 0; attempt < kCalibrationAttempts && scale.mult == 0; ++attempt)
    scale = measure_tsc(kCalibrationWindowNs, &choice.tsc_ghz);
  if (scale.mult == 0) {
    choice.reason = fmt::format("clock_gettime ({:.0f} ns per call; the TSC's rate was not steady in {} tries)",
                                choice.clock_gettime_ns, kCalibrationAttempts);
    return choice;
  }
  static const TscScale chosen = scale;
  g_tsc_scale.store(&chosen, std::memory_order_release);
  choice.tsc = true;
  choice.reason = fmt::format("TSC at {:.3f} GHz ({:.0f} ns per read; clock_gettime is a system call here, {:.0f} ns)",
                              choice.tsc_ghz, choice.rdtsc_ns, choice.clock_gettime_ns);
  return choice;
}

}  // namespace

std::string reason_to_keep_clock_gettime(bool have_tsc, double clock_gettime_ns, double rdtsc_ns) {
  if (!have_tsc) return "clock_gettime (no TSC on this architecture)";
  if (clock_gettime_ns < kSystemCallNs)
    return fmt::format("clock_gettime ({:.0f} ns per call: the vDSO)", clock_gettime_ns);
  if (rdtsc_ns * 10 > clock_gettime_ns)
    return fmt::format("clock_gettime ({:.0f} ns per call; rdtsc is not much cheaper at {:.0f} ns)",
                       clock_gettime_ns, rdtsc_ns);
  return {};
}

TscScale measure_tsc(uint64_t window_ns, double* ghz) {
  if (!kHaveTsc) return {};
  const Point p0 = sample();
  sleep_ns(window_ns);
  const Point p1 = sample();
  sleep_ns(window_ns);
  const Point p2 = sample();
  if (p1.tsc <= p0.tsc || p2.tsc <= p1.tsc || p1.ns <= p0.ns || p2.ns <= p1.ns) return {};
  const double rate1 = static_cast<double>(p1.tsc - p0.tsc) / static_cast<double>(p1.ns - p0.ns);
  const double rate2 = static_cast<double>(p2.tsc - p1.tsc) / static_cast<double>(p2.ns - p1.ns);
  if (std::fabs(rate1 - rate2) > 0.01 * std::max(rate1, rate2)) return {};
  if (ghz) *ghz = static_cast<double>(p2.tsc - p0.tsc) / static_cast<double>(p2.ns - p0.ns);
  return TscScale::through(p0.tsc, p0.ns, p2.tsc, p2.ns);
}

const FastClockChoice& calibrate() {
  static const FastClockChoice choice = choose();
  return choice;
}

}  // namespace fast_clock
}  // namespace xbb::backend
