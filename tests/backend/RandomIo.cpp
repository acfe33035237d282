#include "tests/backend/RandomIo.hpp"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "tests/frontend/Pattern.hpp"

namespace xbb::backendtest {

using frontend::BlkCompletion;
using frontend::BlkRequest;
using Kind = BlkRequest::Kind;
using namespace std::chrono_literals;

IoTally run_random_io(frontend::SoftBlkfront& disk, DiskModel& model, unsigned requests, unsigned depth,
                      uint32_t seed, const std::function<void(uint64_t completed)>& after_completion,
                      bool forget_failed_writes) {
  std::mt19937 rng(seed);
  IoTally tally;
  struct InFlight {
    BlkRequest request;
    uint64_t first, count;  // sectors touched
  };
  std::map<uint64_t, InFlight> flying;
  uint64_t completed = 0;
  const auto& info = disk.backend();
  const uint64_t sectors = std::min<uint64_t>(info.sectors, model.sectors());
  const uint32_t max_sectors = disk.max_request_sectors();
  const uint32_t granularity_sectors = std::max<uint32_t>(info.discard_granularity / 512, 8);
  auto overlaps = [&](uint64_t first, uint64_t count) {
    for (auto& [h, f] : flying)
      if (first < f.first + f.count && f.first < first + count) return true;
    return false;
  };
  auto complete = [&](BlkCompletion& c) {
    auto it = flying.find(c.handle);
    if (it == flying.end()) throw std::logic_error("completion for an unknown handle");
    const BlkRequest& r = it->second.request;
    if (c.status != 0) {
      ++tally.failures;
      if (forget_failed_writes && (r.kind == Kind::Write || r.kind == Kind::Barrier) && !r.data.empty())
        model.forget(r.sector, r.data.size() / 512);
      if (tally.first_error.empty())
        tally.first_error = "status " + std::to_string(c.status) + " for kind " + std::to_string(int(r.kind)) +
                            " at sector " + std::to_string(r.sector);
    } else if (r.kind == Kind::Write || ((r.kind == Kind::Barrier || r.kind == Kind::Flush) && !r.data.empty())) {
      model.write(r.sector, r.data);
      tally.bytes_written += r.data.size();
    } else if (r.kind == Kind::Read) {
      tally.bytes_read += c.data.size();
      auto error = model.check(r.sector, c.data);
      if (error.empty()) {
        ++tally.reads_verified;
      } else if (tally.first_error.empty()) {
        tally.first_error = "read at " + std::to_string(r.sector) + ": " + error;
      }
    } else if (r.kind == Kind::Discard) {
      model.forget(r.sector, r.sectors);
    }
    flying.erase(it);
    ++completed;
  };
  auto completed_some = [&] {
    if (after_completion) after_completion(completed);
  };

  unsigned issued = 0;
  uint64_t generation = 0;
  while (issued < requests || !flying.empty()) {
    if (issued < requests && flying.size() < depth) {
      BlkRequest r;
      const unsigned dice = rng() % 100;
      uint32_t count = 0;
      // Mostly small requests, sometimes as large as one request can be.
      const uint32_t limit = (rng() % 4 == 0) ? max_sectors : std::min<uint32_t>(max_sectors, 64);
      count = 1 + rng() % limit;
      if (dice < 45) {
        r.kind = Kind::Write;
      } else if (dice < 85) {
        r.kind = Kind::Read;
      } else if (dice < 90) {
        // Half of the flushes carry data, written after the flush (blkback's REQ_PREFLUSH write).
        r.kind = Kind::Flush;
        count = rng() % 2 == 0 ? 0 : 1 + rng() % (11 * 8 - disk.config().first_sector_offset);
      } else if (dice < 95 && info.barrier) {
        r.kind = Kind::Barrier;
        count = 1 + rng() % std::min<uint32_t>(max_sectors, 11 * 8 - disk.config().first_sector_offset);
        count = std::min<uint32_t>(count, (11 * 8 - disk.config().first_sector_offset));
      } else if (info.discard) {
        r.kind = Kind::Discard;
        count = granularity_sectors * (1 + rng() % 4);
        r.secure = info.discard_secure && rng() % 2 == 0;
      } else {
        r.kind = Kind::Flush;
        count = 0;
      }
      uint64_t first = 0;
      if (count > 0) {
        first = rng() % (sectors - count);
        if (r.kind == Kind::Discard) first -= first % granularity_sectors;
        if (overlaps(first, count)) {
          // Let something finish rather than reorder around it.
          for (auto& c : disk.poll(10ms)) complete(c);
          completed_some();
          continue;
        }
      }
      r.sector = first;
      if (r.kind == Kind::Read || r.kind == Kind::Discard) r.sectors = count;
      if (r.kind == Kind::Write || r.kind == Kind::Barrier || (r.kind == Kind::Flush && count > 0))
        r.data = frontend::pattern(seed, first, count, ++generation);
      auto handle = disk.submit(r);
      if (!handle) {
        for (auto& c : disk.poll(100ms)) complete(c);
        completed_some();
        continue;
      }
      switch (r.kind) {
        case Kind::Read: ++tally.reads; break;
        case Kind::Write: ++tally.writes; break;
        case Kind::Flush: ++tally.flushes; break;
        case Kind::Barrier: ++tally.barriers; break;
        case Kind::Discard: ++tally.discards; break;
      }
      flying.emplace(*handle, InFlight{std::move(r), first, count});
      ++issued;
      for (auto& c : disk.poll(0ms)) complete(c);
      completed_some();
    } else {
      auto done = disk.poll(5000ms);
      if (done.empty()) throw std::runtime_error("no completion within 5 s (" + std::to_string(flying.size()) + " in flight)");
      for (auto& c : done) complete(c);
      completed_some();
    }
  }
  return tally;
}

}  // namespace xbb::backendtest
