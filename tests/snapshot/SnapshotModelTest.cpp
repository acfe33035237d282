// Randomized model test: two worker threads write and discard an origin
// through their own queues while the main thread takes, reads, breaks and
// deletes snapshots; every read is checked against a model, then (file
// origin) everything is dropped, re-opened and re-attached and checked again.
//
// The model. Each worker owns every other 8 KiB stripe and never has two
// requests in flight on one stripe, so each sector's history is a sequence of
// writes (id, tick when submit() returned, completion tick) on a global tick
// counter. A snapshot taken between ticks t0 (call) and t1 (return) must
// contain, per sector, the last write submitted before t0 (creation drains
// it) or a later one submitted before t1 (it may have been routed before the
// hold) -- and nothing else; and it must never change afterwards. Stripes
// are smaller than the larger clusters, so both workers race on clusters.
#include <poll.h>

#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "storage/snapshot/CowOriginStorage.hpp"
#include "storage/file/FileStorage.hpp"
#include "storage/ram/RamStorage.hpp"
#include "storage/snapshot/SnapshotStorage.hpp"
#include "tests/snapshot/SnapshotTestSupport.hpp"

namespace xbb::storage {
namespace {

using namespace snapshot_test;

constexpr uint64_t kSize = 1 << 20;
constexpr uint64_t kStripe = 8192;
constexpr uint64_t kSectors = kSize / kSector;
constexpr unsigned kWorkers = 2;
constexpr unsigned kWritesPerWorker = 2500;
constexpr unsigned kDepth = 4;

std::atomic<uint64_t> g_tick{1};
uint64_t tick() { return g_tick.fetch_add(1); }

struct Event {
  uint64_t id;
  uint64_t submitted;
  uint64_t completed;
};

struct Model {
  std::vector<std::vector<Event>> history = std::vector<std::vector<Event>>(kSectors, {Event{0, 0, 0}});
};

struct Worker {
  unsigned number;
  std::unique_ptr<StorageQueue> queue;
  bool discards;
  std::atomic<unsigned> completed{0};
  std::atomic<uint64_t> loops{0};  // reap() calls
  std::vector<std::string> failures;

  // Writes are issued up to `allowance` (raised by the main thread step by
  // step, so snapshot operations interleave with the whole run).
  void run(Model& model, const std::atomic<bool>& stop, const std::atomic<unsigned>& allowance, uint64_t seed) {
    std::mt19937_64 rng(seed);
    struct Pending {
      Buffer buffer{kStripe};
      iovec iov{};
      uint64_t offset = 0, length = 0, id = 0, submitted = 0, stripe = 0;
      bool busy = false;
    };
    std::vector<Pending> slots(kDepth);
    std::vector<bool> stripe_busy(kSize / kStripe, false);
    unsigned issued = 0, in_flight = 0;
    uint64_t next_id = (static_cast<uint64_t>(number) + 1) << 40;
    while (!stop.load() || in_flight > 0) {
      while (issued < std::min(kWritesPerWorker, allowance.load()) && in_flight < kDepth) {
        uint64_t stripe = (rng() % (kSize / kStripe / kWorkers)) * kWorkers + number;
        if (stripe_busy[stripe]) break;
        unsigned s = 0;
        while (slots[s].busy) ++s;
        Pending& p = slots[s];
        const uint64_t first = rng() % (kStripe / kSector);
        const uint64_t count = 1 + rng() % (kStripe / kSector - first);
        p.offset = stripe * kStripe + first * kSector;
        p.length = count * kSector;
        p.stripe = stripe;
        IoRequest r;
        r.offset = p.offset;
        r.tag = s;
        if (discards && rng() % 10 == 0) {
          p.id = 0;
          r.op = IoOp::Discard;
          r.length = p.length;
        } else {
          p.id = ++next_id;
          fill_sectors({p.buffer.data(), p.length}, p.offset, p.id);
          p.iov = {p.buffer.data(), p.length};
          r.op = IoOp::Write;
          r.iov = &p.iov;
          r.iovcnt = 1;
        }
        if (int rc = queue->submit(r)) {
          failures.push_back("submit refused: " + std::to_string(rc));
          return;
        }
        p.submitted = tick();  // after submit(): it was routed or held by now
        p.busy = true;
        stripe_busy[stripe] = true;
        ++issued;
        ++in_flight;
      }
      queue->flush_submissions();
      IoCompletion done[kDepth];
      const size_t n = queue->reap(done);
      const uint64_t now = tick();
      for (size_t i = 0; i < n; ++i) {
        Pending& p = slots[done[i].tag];
        const int32_t expected = p.id == 0 ? 0 : static_cast<int32_t>(p.length);
        if (done[i].result != expected) failures.push_back("write failed: " + std::to_string(done[i].result));
        for (uint64_t s = p.offset / kSector; s < (p.offset + p.length) / kSector; ++s)
          model.history[s].push_back({p.id, p.submitted, now});  // sectors of this worker only
        p.busy = false;
        stripe_busy[p.stripe] = false;
        --in_flight;
        completed.fetch_add(1);
      }
      loops.fetch_add(1);
      if (n == 0) {
        pollfd pfd{queue->completion_fd(), POLLIN, 0};
        ::poll(&pfd, 1, 5);  // also wakes up to top the queue up
      }
    }
  }
};

struct Taken {
  std::shared_ptr<Snapshot> snapshot;
  std::string path;
  uint64_t t0 = 0, t1 = 0;
  bool deleted = false;
  bool faulty = false;
  std::vector<std::vector<uint64_t>> reads;  // successful full reads, sector ids
  unsigned failed_reads = 0;
};

// Reads a whole snapshot; returns false on -EIO (and records nothing).
bool read_snapshot(const std::shared_ptr<CowOriginStorage>& origin, Taken& t, StorageQueue* queue = nullptr) {
  std::unique_ptr<StorageQueue> own;
  if (!queue) {
    own = SnapshotStorage(origin, t.snapshot).open_queue(2);
    queue = own.get();
  }
  Buffer buffer(kSize);
  const int32_t rc = read_at(*queue, 0, buffer.span());
  if (rc == -EIO) {
    ++t.failed_reads;
    return false;
  }
  EXPECT_EQ(rc, static_cast<int32_t>(kSize));
  std::vector<uint64_t> ids(kSectors);
  for (uint64_t s = 0; s < kSectors; ++s) ids[s] = sector_id({buffer.data() + s * kSector, kSector}, s * kSector);
  t.reads.push_back(std::move(ids));
  return true;
}

void check_snapshot(const Model& model, const Taken& t) {
  for (size_t r = 0; r < t.reads.size(); ++r) {
    for (uint64_t s = 0; s < kSectors; ++s) {
      const uint64_t got = t.reads[r][s];
      ASSERT_EQ(got, t.reads[0][s]) << t.path << ": sector " << s << " changed between reads 0 and " << r;
      const auto& h = model.history[s];
      // Writes whose submit() returned before t0 were routed before the hold,
      // so creation drained them into the snapshot.
      size_t base = 0;
      for (size_t i = 0; i < h.size(); ++i)
        if (h[i].submitted < t.t0) base = i;
      bool ok = false;
      for (size_t i = base; i < h.size() && !ok; ++i) ok = (i == base || h[i].submitted < t.t1) && h[i].id == got;
      ASSERT_TRUE(ok) << t.path << ": sector " << s << " reads id " << got << ", which the snapshot cannot hold";
    }
  }
}

void run_model(bool file_origin, uint64_t seed) {
  TempDir dir;
  const std::string image = dir.file("origin.img");
  auto open_origin = [&] {
    if (file_origin) return CowOriginStorage::create(FileStorage::open(image, {}));
    return CowOriginStorage::create(RamStorage::create(kSize, "", {}));
  };
  if (file_origin) make_file(image, kSize);
  auto origin = open_origin();
  Model model;
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned w = 0; w < kWorkers; ++w) {
    workers.push_back(std::make_unique<Worker>());
    workers[w]->number = w;
    workers[w]->queue = origin->open_queue(kDepth);
    workers[w]->discards = origin->properties().can_discard;
  }
  std::atomic<bool> stop{false};
  std::atomic<unsigned> allowance{0};
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < kWorkers; ++w)
    threads.emplace_back([&, w] { workers[w]->run(model, stop, allowance, seed * 31 + w); });

  std::mt19937_64 rng(seed);
  std::vector<Taken> taken;
  const uint32_t clusters[] = {4096, 16384, 65536};
  auto total = [&] {
    unsigned n = 0;
    for (auto& w : workers) n += w->completed.load();
    return n;
  };
  constexpr unsigned kSteps = 16;
  for (unsigned step = 1; step <= kSteps; ++step) {
    // Act in the middle of this step's writes, while they are in flight.
    const unsigned before = allowance.load();
    const unsigned after = kWritesPerWorker * step / (kSteps + 1);
    allowance.store(after);
    while (total() < kWorkers * (before + (after - before) / 2)) std::this_thread::yield();
    const unsigned action = step <= 3 ? 0 : static_cast<unsigned>(rng() % 4);
    if (action <= 1 || taken.empty()) {  // take one
      // Writes held by the previous creation have been released by now: every
      // worker has called reap() since it returned.
      std::vector<uint64_t> seen;
      for (auto& w : workers) seen.push_back(w->loops.load());
      for (unsigned w = 0; w < kWorkers; ++w)
        while (workers[w]->loops.load() < seen[w] + 2) std::this_thread::yield();
      Taken t;
      t.path = dir.file("snap" + std::to_string(taken.size()) + ".cow");
      t.t0 = tick();
      t.snapshot = origin->create_snapshot(t.path, clusters[rng() % 3]);
      t.t1 = tick();
      if (taken.size() == 2) {  // this one's store fails after a few copies
        t.faulty = true;
        auto copies = std::make_shared<std::atomic<int>>(0);
        t.snapshot->set_store_fault_hook(
            [copies](StoreIo io) { return io == StoreIo::DataWrite && copies->fetch_add(1) >= 3 ? -EIO : 0; });
      }
      taken.push_back(std::move(t));
    } else if (action == 2) {  // read one (racing the writers)
      Taken& t = taken[rng() % taken.size()];
      if (!t.deleted) {
        const bool ok = read_snapshot(origin, t);
        if (!t.faulty) {
          EXPECT_TRUE(ok) << t.path;
        }
      }
    } else {  // delete one (never the faulty one: it must be seen failing)
      Taken& t = taken[rng() % taken.size()];
      if (!t.deleted && !t.faulty && taken.size() > 3) {
        auto view = SnapshotStorage(origin, t.snapshot).open_queue(2);
        ASSERT_TRUE(origin->delete_snapshot(t.snapshot->id(), rng() % 2 == 0));
        t.deleted = true;
        Buffer b(4096);
        EXPECT_EQ(read_at(*view, 0, b.span()), -EIO) << "a deleted snapshot was readable";
      }
    }
  }
  allowance.store(kWritesPerWorker);
  while (total() < kWorkers * kWritesPerWorker) std::this_thread::yield();
  stop = true;
  for (auto& t : threads) t.join();
  for (auto& w : workers) {
    EXPECT_TRUE(w->failures.empty()) << w->failures.front();
  }

  // Origin: the last write of every sector.
  auto oq = origin->open_queue(2);
  const auto now = read_ids(*oq, kSize);
  for (uint64_t s = 0; s < kSectors; ++s) ASSERT_EQ(now[s], model.history[s].back().id) << "origin sector " << s;
  // Snapshots: a final read of each, then every read against the model.
  for (Taken& t : taken) {
    if (t.deleted) continue;
    const bool ok = read_snapshot(origin, t);
    if (t.faulty) {
      EXPECT_FALSE(ok) << "a snapshot whose store failed was still readable";
      EXPECT_FALSE(t.snapshot->valid());
    } else {
      EXPECT_TRUE(ok);
      EXPECT_TRUE(t.snapshot->valid()) << t.snapshot->invalid_reason();
    }
    check_snapshot(model, t);
  }
  ASSERT_GE(taken.size(), 4u);
  if (!file_origin) return;

  // Restart: drop everything, re-open, re-attach, compare with what was read.
  oq.reset();
  workers.clear();
  std::vector<std::string> live;
  for (Taken& t : taken) t.snapshot.reset();
  origin.reset();
  origin = open_origin();
  for (Taken& t : taken) {
    if (t.deleted) continue;
    if (t.faulty) {
      EXPECT_NE(error_of([&] { origin->attach_snapshot(t.path); }).find("invalid"), std::string::npos);
      continue;
    }
    t.snapshot = origin->attach_snapshot(t.path);
    const auto before = t.reads.back();
    ASSERT_TRUE(read_snapshot(origin, t));
    EXPECT_EQ(t.reads.back(), before) << t.path << " changed across the restart";
  }
  const auto after = read_ids(*origin->open_queue(2), kSize);
  EXPECT_EQ(after, now) << "the origin changed across the restart";
}

TEST(SnapshotModel, RamOriginTwoQueues) { run_model(false, 1); }
TEST(SnapshotModel, FileOriginTwoQueuesAndRestart) { run_model(true, 2); }

}  // namespace
}  // namespace xbb::storage
