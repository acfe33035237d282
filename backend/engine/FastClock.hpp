// The queue workers' clock: monotonic nanoseconds, read a few times per
// request (latency statistics, busy-poll budgets, notification holds).
//
// Why not std::chrono::steady_clock alone: in a Xen PV domain, dom0 included,
// the kernel's clocksource is "xen", and the vDSO reads it only when Xen marks
// the TSC stable. Otherwise every clock_gettime is a system call through the
// hypervisor: 25.7 µs per call measured in the lab's dom0, against 45 ns for
// rdtsc (and 22 ns for clock_gettime on a bare-metal host with the vDSO).
// There, xbbd spent more time reading the clock than moving 4 KiB of data.
//
// So calibrate() measures both clocks once per process. Where clock_gettime
// costs a system call and the TSC is at least ten times cheaper and ticks at a
// steady rate (two calibration windows agree within 1 %, in one of three
// tries), now_ns() is the TSC
// scaled by the measured rate. Everywhere else, including every host whose
// vDSO works, now_ns() is clock_gettime(CLOCK_MONOTONIC) as before.
//
// The readings are for durations inside this process, never shown as time of
// day. Two CPUs' TSCs may differ slightly, so callers treat a reading that
// runs backwards as no time having passed.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include <time.h>

namespace xbb::backend {

// TSC ticks to nanoseconds: base_ns + (tsc - base_tsc) * mult / 2^32.
struct TscScale {
  uint64_t base_tsc = 0;
  uint64_t base_ns = 0;
  uint64_t mult = 0;  // nanoseconds per tick, in 32.32 fixed point

  uint64_t ns(uint64_t tsc) const {
    // A TSC behind the base (another CPU's, a little late) reads as the base.
    const uint64_t ticks = tsc > base_tsc ? tsc - base_tsc : 0;
    return base_ns + static_cast<uint64_t>((static_cast<unsigned __int128>(ticks) * mult) >> 32);
  }
  // The scale through two (tsc, ns) points; mult 0 when they do not advance.
  static TscScale through(uint64_t tsc0, uint64_t ns0, uint64_t tsc1, uint64_t ns1);
};

// What calibrate() found, for the daemon's log and for tests.
struct FastClockChoice {
  bool tsc = false;
  double clock_gettime_ns = 0;  // cost of one call, measured
  double rdtsc_ns = 0;          // cost of one call, measured (0: no TSC)
  double tsc_ghz = 0;           // measured rate (0: not measured)
  std::string reason;           // why this clock, in words
};

namespace fast_clock {

inline uint64_t monotonic_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Set once by calibrate() when the TSC is the clock; null otherwise.
extern std::atomic<const TscScale*> g_tsc_scale;

inline uint64_t now_ns() {
#if defined(__x86_64__) || defined(__i386__)
  if (const TscScale* scale = g_tsc_scale.load(std::memory_order_acquire)) return scale->ns(__rdtsc());
#endif
  return monotonic_ns();
}

// Chooses the clock, once per process (later calls return the first choice).
// It may take 40-120 ms when clock_gettime is a system call; Daemon::run
// calls it before any worker starts. Until it has, now_ns() is clock_gettime.
const FastClockChoice& calibrate();

// The first half of calibrate()'s choice, from whether the CPU has a TSC and
// the measured cost of one clock_gettime and one rdtsc: whether the TSC is
// worth calibrating. Empty when it is; otherwise why clock_gettime stays.
// An rdtsc cost of 0 means too cheap to measure: the lab's PV dom0 clamps
// clock_gettime to the last value another vCPU saw, so a short measurement
// can see no time pass at all.
std::string reason_to_keep_clock_gettime(bool have_tsc, double clock_gettime_ns, double rdtsc_ns);

// Measures the TSC's rate over two windows of `window_ns` each, whatever
// clock_gettime costs. Returns the scale, or mult 0 when the TSC does not
// advance or the windows disagree by more than 1 %. For calibrate() and tests.
TscScale measure_tsc(uint64_t window_ns, double* ghz = nullptr);

}  // namespace fast_clock
}  // namespace xbb::backend
