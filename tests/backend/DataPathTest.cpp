// Whole-daemon data path: every ABI, ring orders 0..5, 1..4 queues,
// persistent and copied grants, direct and indirect requests, flush,
// barrier, discard (secure where the storage has it), on RAM and on a file,
// with thousands of random requests checked against a model.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "tests/backend/DaemonHarness.hpp"
#include "tests/backend/RandomIo.hpp"
#include "ring/protocol/RingGeometry.hpp"
#include "tests/frontend/Pattern.hpp"

namespace xbb::backendtest {
namespace {

using frontend::FrontendConfig;
using frontend::VbdSpec;
using ring::Abi;

constexpr uint64_t kDiskBytes = 16ull << 20;

struct Case {
  std::string name;
  std::optional<Abi> abi;
  unsigned order;
  unsigned queues;
  bool persistent;
  bool indirect;
  bool file;
  unsigned first_offset;
};

class DataPath : public ::testing::TestWithParam<Case> {};

TEST_P(DataPath, RandomIoMatchesModel) {
  const Case& c = GetParam();
  DaemonHarness h;
  std::optional<TempFile> file;
  if (c.file) file.emplace(kDiskBytes);
  auto guest = h.world().add_guest(5);
  VbdSpec spec;
  spec.domid = 5;
  spec.target = c.file ? file->path() : "ram:16M";
  h.toolstack().add_vbd(spec);

  FrontendConfig config;
  config.protocol = c.abi;
  config.ring_page_order = c.order;
  config.queues = c.queues;
  config.persistent_grants = c.persistent;
  config.use_indirect = c.indirect;
  config.first_sector_offset = c.first_offset;
  auto disk = guest->disk(spec.devid, config);
  ASSERT_NO_THROW(disk->connect());
  const auto& info = disk->backend();
  EXPECT_EQ(info.ring_page_order, c.order);
  EXPECT_EQ(info.queues, c.queues);
  EXPECT_EQ(info.persistent, c.persistent);
  EXPECT_EQ(info.max_indirect_segments, 256u);
  EXPECT_EQ(info.sectors, kDiskBytes / 512);
  EXPECT_EQ(info.info & 4u, 0u) << "a writable disk must not say READONLY";
  EXPECT_TRUE(info.barrier);
  EXPECT_EQ(info.flush, c.file) << "RAM has no cache to flush; a file has the page cache";
  EXPECT_EQ(disk->queue_depth(), ring::ring_entries(c.abi.value_or(Abi::Native), 1u << c.order));

  auto dev = h.device_stats("5/51712");
  ASSERT_FALSE(dev.is_null());
  EXPECT_EQ(dev["queues"], c.queues);
  EXPECT_EQ(dev["ring_page_order"], c.order);
  EXPECT_EQ(dev["persistent_grants"], c.persistent);

  DiskModel model(kDiskBytes / 512);
  auto tally = run_random_io(*disk, model, 400, 24, 1234 + c.order * 7 + c.queues);
  EXPECT_EQ(tally.failures, 0u) << tally.first_error;
  EXPECT_TRUE(tally.first_error.empty()) << tally.first_error;
  EXPECT_GT(tally.reads_verified, 100u);
  EXPECT_TRUE(disk->violations().empty()) << disk->violations().front();

  // The daemon counted exactly what we issued.
  auto stats = h.device_stats("5/51712")["stats"];
  EXPECT_EQ(stats["bytes_read"].get<uint64_t>(), tally.bytes_read);
  EXPECT_EQ(stats["bytes_written"].get<uint64_t>(), tally.bytes_written);

  // A whole-disk sweep at the end: every sector the model knows.
  const uint32_t chunk = 64;
  std::vector<std::byte> buf(chunk * 512);
  for (uint64_t s = 0; s < kDiskBytes / 512; s += chunk) {
    ASSERT_EQ(disk->read(s, buf), 0);
    ASSERT_EQ(model.check(s, buf), "") << "sweep at sector " << s;
  }

  ASSERT_NO_THROW(disk->close());
  EXPECT_EQ(disk->grants_held(), 0u) << "every grant ended after close";
  EXPECT_TRUE(h.toolstack().remove_vbd(5, spec.devid, 10s));
}

INSTANTIATE_TEST_SUITE_P(
    Matrix, DataPath,
    ::testing::Values(Case{"native_o0_q1_copy_ram", std::nullopt, 0, 1, false, true, false, 0},
                      Case{"x86_32_o0_q1_persistent_ram", Abi::X86_32, 0, 1, true, true, false, 0},
                      Case{"x86_64_o1_q2_copy_ram", Abi::X86_64, 1, 2, false, true, false, 3},
                      Case{"native_o2_q4_persistent_file", std::nullopt, 2, 4, true, true, true, 0},
                      Case{"x86_32_o3_q1_copy_file", Abi::X86_32, 3, 1, false, true, true, 5},
                      Case{"x86_64_o4_q3_persistent_ram", Abi::X86_64, 4, 3, true, true, false, 0},
                      Case{"native_o5_q1_persistent_ram_offset", std::nullopt, 5, 1, true, true, false, 7},
                      Case{"x86_32_o5_q4_copy_direct_only", Abi::X86_32, 5, 4, false, false, false, 0},
                      Case{"x86_64_o2_q1_copy_file_direct_only", Abi::X86_64, 2, 1, false, false, true, 1}),
    [](const auto& info) { return info.param.name; });

TEST(DataPathFeatures, ReadOnlyDiskRejectsWritesAndServesReads) {
  DaemonHarness h;
  auto guest = h.world().add_guest(6);
  VbdSpec spec;
  spec.domid = 6;
  spec.writable = false;
  h.toolstack().add_vbd(spec);
  auto disk = guest->disk(spec.devid);
  ASSERT_NO_THROW(disk->connect());
  EXPECT_EQ(disk->backend().info & 4u, 4u) << "info must carry VDISK_READONLY";
  EXPECT_FALSE(disk->backend().discard) << "no discard on a read-only disk";
  auto data = frontend::pattern(6, 0, 8, 0);
  EXPECT_EQ(disk->write(0, data), ring::kStatusError);
  std::vector<std::byte> out(8 * 512);
  EXPECT_EQ(disk->read(0, out), ring::kStatusOkay);
  EXPECT_EQ(out, std::vector<std::byte>(8 * 512)) << "the rejected write must not reach the disk";
  frontend::BlkRequest barrier;
  barrier.kind = frontend::BlkRequest::Kind::Barrier;
  barrier.data = data;
  EXPECT_EQ(disk->execute(barrier).status, ring::kStatusError);
  EXPECT_EQ(disk->flush(), ring::kStatusOkay) << "a flush without data is fine on a read-only disk";
  EXPECT_TRUE(disk->violations().empty());
  disk->close();
}

TEST(DataPathFeatures, DiscardAndSecureDiscardOnRam) {
  DaemonHarness h;
  auto guest = h.world().add_guest(7);
  VbdSpec spec;
  spec.domid = 7;
  h.toolstack().add_vbd(spec);
  auto disk = guest->disk(spec.devid);
  ASSERT_NO_THROW(disk->connect());
  ASSERT_TRUE(disk->backend().discard);
  EXPECT_TRUE(disk->backend().discard_secure) << "RAM can forget securely";
  EXPECT_GE(disk->backend().discard_granularity, 512u);
  auto data = frontend::pattern(7, 64, 64, 0);
  ASSERT_EQ(disk->write(64, data), 0);
  EXPECT_EQ(disk->discard(64, 32, /*secure=*/false), 0);
  EXPECT_EQ(disk->discard(96, 32, /*secure=*/true), 0);
  std::vector<std::byte> out(64 * 512);
  ASSERT_EQ(disk->read(64, out), 0);
  EXPECT_NE(out, data) << "discarded sectors must no longer read back the old data";
  EXPECT_EQ(disk->discard(32768 - 8, 16), ring::kStatusError) << "discard past the end";
  auto stats = h.device_stats("7/51712")["stats"];
  EXPECT_EQ(stats["operations"]["discard"]["received"].get<uint64_t>(), 3u);
  EXPECT_EQ(stats["operations"]["discard"]["failed"].get<uint64_t>(), 1u);
  disk->close();
}

TEST(DataPathFeatures, DiscardDisabledByToolstackIsNotOffered) {
  DaemonHarness h;
  auto guest = h.world().add_guest(8);
  VbdSpec spec;
  spec.domid = 8;
  spec.discard_enable = false;
  h.toolstack().add_vbd(spec);
  auto disk = guest->disk(spec.devid);
  ASSERT_NO_THROW(disk->connect());
  EXPECT_FALSE(disk->backend().discard);
  EXPECT_EQ(disk->discard(0, 8), ring::kStatusNotSupported);
  disk->close();
}

// Notification moderation (backend/engine/NotifyModeration.hpp) on a deep queue:
// off by default; switched on, events are held to cover several responses,
// every request is still answered, and notify_batch=0 turns it off again on
// the running device.
TEST(DataPathFeatures, ADeepQueueSharesEventsWhileModerationIsOn) {
  DaemonHarness h;
  auto guest = h.world().add_guest(9);
  VbdSpec spec;
  spec.domid = 9;
  h.toolstack().add_vbd(spec);
  FrontendConfig config;
  config.ring_page_order = 0;  // 32 slots: a depth of 24 is deep
  auto disk = guest->disk(spec.devid, config);
  ASSERT_NO_THROW(disk->connect());
  DiskModel model(kDiskBytes / 512);
  auto tally = run_random_io(*disk, model, 500, 24, 98);
  EXPECT_EQ(tally.failures, 0u) << tally.first_error;
  auto stats = h.device_stats("9/51712")["stats"];
  EXPECT_EQ(stats["notifications_held"].get<uint64_t>(), 0u) << "off by default";

  auto answer = h.command({{"command", "set"}, {"device", "9/xvda"}, {"name", "notify_batch"}, {"value", "8"}});
  ASSERT_TRUE(answer.value("ok", false)) << answer.dump();
  const auto sent_before = stats["notifications_sent"].get<uint64_t>();
  tally = run_random_io(*disk, model, 2000, 24, 99);
  EXPECT_EQ(tally.failures, 0u) << tally.first_error;
  stats = h.device_stats("9/51712")["stats"];
  const auto held = stats["notifications_held"].get<uint64_t>();
  EXPECT_GT(held, 0u) << "a frontend with 24 requests outstanding gets fewer events than answers";
  EXPECT_LT(stats["notifications_sent"].get<uint64_t>() - sent_before,
            tally.reads + tally.writes + tally.flushes + tally.discards);
  // A frontend that only waits for events (the random I/O above also polls):
  // batches of 20 are two batches of 8 and a rest that only the delay sends.
  for (int round = 0; round < 20; ++round) {
    for (uint32_t i = 0; i < 20; ++i) {
      frontend::BlkRequest r;
      r.kind = frontend::BlkRequest::Kind::Read;
      r.sector = uint64_t(i) * 8;
      r.sectors = 8;
      ASSERT_TRUE(disk->submit(r));
    }
    while (disk->in_flight() > 0) {
      auto done = disk->poll(std::chrono::milliseconds(5000));
      ASSERT_FALSE(done.empty()) << "round " << round;
      for (const auto& c : done) EXPECT_EQ(c.status, ring::kStatusOkay);
    }
  }

  answer = h.command({{"command", "set"}, {"device", "9/xvda"}, {"name", "notify_batch"}, {"value", "0"}});
  ASSERT_TRUE(answer.value("ok", false)) << answer.dump();
  const auto held_when_off = h.device_stats("9/51712")["stats"]["notifications_held"].get<uint64_t>();
  tally = run_random_io(*disk, model, 2000, 24, 100);
  EXPECT_EQ(tally.failures, 0u) << tally.first_error;
  stats = h.device_stats("9/51712")["stats"];
  EXPECT_EQ(stats["notifications_held"].get<uint64_t>(), held_when_off) << "notify_batch=0: every event at once";
  EXPECT_EQ(disk->responses_without_event(), 0u) << "every held event must still be sent";
  disk->close();
}

}  // namespace
}  // namespace xbb::backendtest
