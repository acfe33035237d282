// NbdStorage against a real nbdkit: properties, data, flush, trim, many
// requests from two queues, server death, reconnect and timeouts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "storage/nbd/NbdQueue.hpp"
#include "storage/nbd/NbdStorage.hpp"
#include "storage/Target.hpp"
#include "tests/nbd/NbdTestSupport.hpp"
#include "tests/nbd/NbdkitProcess.hpp"

namespace xbb::storage {
namespace {

using namespace std::chrono_literals;
using test::collect;
using test::fill;
using test::NbdkitProcess;
using test::run;

constexpr uint64_t kDiskBytes = 64ull << 20;

class NbdStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (test::find_nbdkit().empty()) GTEST_SKIP() << "nbdkit is not installed (apt-get install nbdkit)";
  }
  // nbdkit serving ARGS on this test's socket.
  std::unique_ptr<NbdkitProcess> serve(std::vector<std::string> args) {
    return std::make_unique<NbdkitProcess>(socket_, std::move(args));
  }
  std::string target(const std::string& settings = "") const {
    return "nbd:nbd+unix:///?socket=" + socket_ + settings;
  }
  std::unique_ptr<NbdStorage> open(const std::string& settings = "", const OpenOptions& options = {}) {
    std::unique_ptr<Storage> storage = open_target(target(settings), options);
    auto* nbd = dynamic_cast<NbdStorage*>(storage.get());
    EXPECT_NE(nbd, nullptr) << "open_target(\"nbd:...\") did not make an NbdStorage";
    if (!nbd) return nullptr;
    storage.release();
    return std::unique_ptr<NbdStorage>(nbd);
  }
  // Waits until the queue's connection has connected `count` times in all.
  static bool wait_for_connects(StorageQueue& queue, uint64_t count) {
    auto& connection = dynamic_cast<NbdQueue&>(queue).connection();
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (connection.connects() < count || connection.state() != NbdLinkState::Up) {
      if (std::chrono::steady_clock::now() > give_up) return false;
      std::this_thread::sleep_for(10ms);
    }
    return true;
  }

  test::SocketDir dir_;
  std::string socket_ = dir_.path("nbd.sock");
};

std::vector<iovec> split(std::vector<unsigned char>& buffer, std::initializer_list<size_t> sizes) {
  std::vector<iovec> iov;
  size_t at = 0;
  for (size_t s : sizes) {
    iov.push_back({buffer.data() + at, s});
    at += s;
  }
  return iov;
}

IoRequest rw(IoOp op, uint64_t offset, const std::vector<iovec>& iov, uint64_t tag = 1) {
  return {.op = op, .offset = offset, .length = 0, .iov = iov.data(), .iovcnt = static_cast<unsigned>(iov.size()), .tag = tag};
}

TEST_F(NbdStorageTest, KindIsRegistered) {
  const auto kinds = registered_kinds();
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "nbd"), kinds.end());
}

TEST_F(NbdStorageTest, PropertiesFromTheServer) {
  auto server = serve({"memory", "size=64M"});
  auto storage = open();
  ASSERT_TRUE(storage);
  const Properties& p = storage->properties();
  EXPECT_EQ(p.size_bytes, kDiskBytes);
  EXPECT_EQ(p.logical_block_size, 512u);   // the memory plugin reports no block sizes
  EXPECT_EQ(p.physical_block_size, 4096u);
  EXPECT_FALSE(p.read_only);
  EXPECT_TRUE(p.can_flush);
  EXPECT_TRUE(p.can_discard);
  EXPECT_EQ(p.discard_granularity, 4096u);
  EXPECT_FALSE(p.can_secure_discard);
  EXPECT_TRUE(storage->connection_per_queue()) << "the memory plugin allows multi-conn";
  EXPECT_EQ(storage->describe(), target("#reconnect=5s&timeout=30s"));
}

TEST_F(NbdStorageTest, ReportedBlockSizesAndSplitting) {
  auto server = serve({"--filter=blocksize-policy", "memory", "size=64M", "blocksize-minimum=4096",
                       "blocksize-preferred=65536", "blocksize-maximum=1M", "blocksize-error-policy=error"});
  auto storage = open();
  ASSERT_TRUE(storage);
  const Properties& p = storage->properties();
  EXPECT_EQ(p.logical_block_size, 4096u);
  EXPECT_EQ(p.physical_block_size, 65536u);
  EXPECT_EQ(p.discard_granularity, 65536u);

  auto queue = storage->open_queue(8);
  // 3 MiB + 4 KiB in two pieces: more than the server's 1 MiB maximum, so it
  // must go out as several commands answered as one completion.
  const size_t bytes = (3u << 20) + 4096;
  std::vector<unsigned char> out(bytes), in(bytes);
  fill(out, 7);
  auto wiov = split(out, {4096, bytes - 4096});
  EXPECT_EQ(run(*queue, rw(IoOp::Write, 1u << 20, wiov)), static_cast<int32_t>(bytes));
  std::vector<iovec> riov = {{in.data(), bytes}};
  EXPECT_EQ(run(*queue, rw(IoOp::Read, 1u << 20, riov)), static_cast<int32_t>(bytes));
  EXPECT_EQ(in, out);

  std::vector<unsigned char> small(512);
  std::vector<iovec> siov = {{small.data(), 512}};
  EXPECT_EQ(queue->submit(rw(IoOp::Read, 0, siov)), -EINVAL) << "below the server's minimum block size";
}

TEST_F(NbdStorageTest, ScatterGatherReadWrite) {
  auto server = serve({"memory", "size=64M"});
  auto storage = open();
  ASSERT_TRUE(storage);
  auto queue = storage->open_queue(4);
  const uint64_t offset = 5 * 4096 + 512;

  std::vector<unsigned char> out(16384), in(16384, 0xEE);
  fill(out, 1);
  auto wiov = split(out, {512, 4096, 1024, 10752});
  EXPECT_EQ(run(*queue, rw(IoOp::Write, offset, wiov)), 16384);
  auto riov = split(in, {8192, 512, 7680});  // a different layout
  EXPECT_EQ(run(*queue, rw(IoOp::Read, offset, riov)), 16384);
  EXPECT_EQ(in, out);

  // A single buffer (the zero-copy path) sees the same bytes, and the
  // neighbours of the written range are untouched (zeros).
  std::vector<unsigned char> whole(16384 + 1024, 0xEE);
  std::vector<iovec> one = {{whole.data(), whole.size()}};
  EXPECT_EQ(run(*queue, rw(IoOp::Read, offset - 512, one)), static_cast<int32_t>(whole.size()));
  EXPECT_TRUE(std::all_of(whole.begin(), whole.begin() + 512, [](unsigned char c) { return c == 0; }));
  EXPECT_TRUE(std::equal(out.begin(), out.end(), whole.begin() + 512));
  EXPECT_TRUE(std::all_of(whole.end() - 512, whole.end(), [](unsigned char c) { return c == 0; }));

  std::vector<iovec> past = {{in.data(), 1024}};
  EXPECT_EQ(queue->submit(rw(IoOp::Read, kDiskBytes - 512, past)), -EINVAL);
}

TEST_F(NbdStorageTest, FlushAndTrim) {
  auto server = serve({"memory", "size=64M"});
  auto storage = open();
  ASSERT_TRUE(storage);
  ASSERT_TRUE(storage->properties().can_discard);
  auto queue = storage->open_queue(4);

  std::vector<unsigned char> data(1u << 20);
  fill(data, 3);
  std::vector<iovec> iov = {{data.data(), data.size()}};
  EXPECT_EQ(run(*queue, rw(IoOp::Write, 8u << 20, iov)), 1 << 20);
  EXPECT_EQ(run(*queue, {.op = IoOp::Flush, .tag = 2}), 0);

  EXPECT_EQ(run(*queue, {.op = IoOp::Discard, .offset = 8u << 20, .length = 1u << 20, .tag = 3}), 0);
  std::vector<unsigned char> back(1u << 20, 0xAA);
  std::vector<iovec> biov = {{back.data(), back.size()}};
  EXPECT_EQ(run(*queue, rw(IoOp::Read, 8u << 20, biov)), 1 << 20);
  EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](unsigned char c) { return c == 0; }))
      << "the memory plugin reads trimmed blocks as zeros";
  EXPECT_EQ(queue->submit({.op = IoOp::SecureDiscard, .offset = 0, .length = 4096}), -EOPNOTSUPP);
}

TEST_F(NbdStorageTest, ReadOnlyExportRejectsWrites) {
  auto server = serve({"-r", "memory", "size=64M"});
  auto storage = open();
  ASSERT_TRUE(storage);
  EXPECT_TRUE(storage->properties().read_only);
  EXPECT_FALSE(storage->properties().can_discard);
  auto queue = storage->open_queue(4);
  std::vector<unsigned char> data(4096);
  std::vector<iovec> iov = {{data.data(), data.size()}};
  EXPECT_EQ(queue->submit(rw(IoOp::Write, 0, iov)), -EROFS);
  EXPECT_EQ(queue->submit({.op = IoOp::Discard, .offset = 0, .length = 4096}), -EROFS);
  EXPECT_EQ(run(*queue, rw(IoOp::Read, 0, iov)), 4096);
}

TEST_F(NbdStorageTest, ReadOnlyOptionOnAWritableExport) {
  auto server = serve({"memory", "size=64M"});
  auto storage = open("", {.read_only = true});
  ASSERT_TRUE(storage);
  EXPECT_TRUE(storage->properties().read_only);
  auto queue = storage->open_queue(1);
  std::vector<unsigned char> data(4096);
  std::vector<iovec> iov = {{data.data(), data.size()}};
  EXPECT_EQ(queue->submit(rw(IoOp::Write, 0, iov)), -EROFS);
}

TEST_F(NbdStorageTest, BadTargetsGiveClearErrors) {
  auto message = [](const std::string& t) -> std::string {
    try {
      open_target(t, {});
    } catch (const StorageError& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_NE(message("nbd:").find("no URI given"), std::string::npos) << message("nbd:");
  const std::string scheme = message("nbd:http://localhost/x");
  EXPECT_NE(scheme.find("cannot connect to 'http://localhost/x'"), std::string::npos) << scheme;
  const std::string missing = message("nbd:nbd+unix:///?socket=" + dir_.path("absent.sock"));
  EXPECT_NE(missing.find("cannot connect"), std::string::npos) << missing;
  EXPECT_NE(missing.find("absent.sock"), std::string::npos) << missing;
  EXPECT_NE(message(target("#timeout=soon")).find("not a duration"), std::string::npos);
  EXPECT_NE(message("nbd:nbd+unix:///?socket=" + socket_ + "#bogus=1").find("unknown setting 'bogus'"),
            std::string::npos);
}

TEST_F(NbdStorageTest, OpenQueueRejectsBadDepth) {
  auto server = serve({"memory", "size=1M"});
  auto storage = open();
  ASSERT_TRUE(storage);
  EXPECT_THROW(storage->open_queue(0), StorageError);
  EXPECT_THROW(storage->open_queue(NbdQueue::kMaxDepth + 1), StorageError);
}

// Two worker threads, each with its own queue and half of the disk, keep many
// requests in flight: every block is written with a generation's pattern in a
// random scatter-gather layout, then read back and checked.
class NbdManyInFlight : public NbdStorageTest, public ::testing::WithParamInterface<const char*> {};

void drive_half(StorageQueue& queue, uint64_t base, uint64_t bytes, uint64_t seed, std::string& failure) {
  constexpr size_t kChunk = 16384;
  const size_t chunks = bytes / kChunk;
  std::mt19937 random(static_cast<uint32_t>(seed));
  std::vector<std::vector<unsigned char>> buffers(chunks, std::vector<unsigned char>(kChunk));
  std::vector<std::vector<iovec>> iovs(chunks);
  std::vector<IoCompletion> done(64);

  for (uint64_t generation = 1; generation <= 2 && failure.empty(); ++generation) {
    for (IoOp op : {IoOp::Write, IoOp::Read}) {
      size_t next = 0, finished = 0;
      while (finished < chunks && failure.empty()) {
        while (next < chunks) {
          auto& buffer = buffers[next];
          if (op == IoOp::Write) fill(buffer, seed * 1000 + generation * 100 + next);
          else std::fill(buffer.begin(), buffer.end(), 0xEE);
          iovs[next].clear();
          size_t at = 0;
          while (at < kChunk) {  // 1 to 4 pieces, each a multiple of 512
            const size_t left = (kChunk - at) / 512;
            const size_t take = iovs[next].size() == 3 ? left : 1 + random() % left;
            iovs[next].push_back({buffer.data() + at, take * 512});
            at += take * 512;
          }
          const int rc = queue.submit(rw(op, base + next * kChunk, iovs[next], next));
          if (rc == -EAGAIN) break;
          if (rc != 0) {
            failure = "submit failed: " + std::to_string(rc);
            return;
          }
          ++next;
        }
        queue.flush_submissions();
        const auto got = collect(queue, 1);
        if (got.empty()) {
          failure = "no completion within 10 s";
          return;
        }
        const size_t n = queue.reap(done);
        std::vector<IoCompletion> all(got);
        all.insert(all.end(), done.begin(), done.begin() + static_cast<long>(n));
        for (const IoCompletion& c : all) {
          if (c.result != static_cast<int32_t>(kChunk)) {
            failure = "request " + std::to_string(c.tag) + " failed: " + std::to_string(c.result);
            return;
          }
          if (op == IoOp::Read) {
            std::vector<unsigned char> expect(kChunk);
            fill(expect, seed * 1000 + generation * 100 + c.tag);
            if (buffers[c.tag] != expect) {
              failure = "chunk " + std::to_string(c.tag) + " read back wrong data";
              return;
            }
          }
          ++finished;
        }
      }
    }
  }
}

TEST_P(NbdManyInFlight, TwoQueuesOnTwoThreadsMatchTheModel) {
  auto server = serve({"memory", "size=64M"});
  auto storage = open(GetParam());
  ASSERT_TRUE(storage);
  EXPECT_EQ(storage->connection_per_queue(), std::string(GetParam()).empty());
  auto q0 = storage->open_queue(32);
  auto q1 = storage->open_queue(32);
  std::string f0, f1;
  std::thread t0([&] { drive_half(*q0, 0, 2u << 20, 11, f0); });
  std::thread t1([&] { drive_half(*q1, 2u << 20, 2u << 20, 22, f1); });
  t0.join();
  t1.join();
  EXPECT_EQ(f0, "");
  EXPECT_EQ(f1, "");
  EXPECT_EQ(q0->in_flight(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Connections, NbdManyInFlight, ::testing::Values("", "#multi-conn=off"),
                         [](const auto& info) { return std::string(info.param).empty() ? "PerQueue" : "Shared"; });

TEST_F(NbdStorageTest, ServerWithoutMultiConnSharesOneConnection) {
  auto server = serve({"--filter=multi-conn", "memory", "size=64M", "multi-conn-mode=disable"});
  auto storage = open();
  ASSERT_TRUE(storage);
  EXPECT_FALSE(storage->connection_per_queue());
  auto q0 = storage->open_queue(4);
  auto q1 = storage->open_queue(4);
  EXPECT_EQ(&dynamic_cast<NbdQueue&>(*q0).connection(), &dynamic_cast<NbdQueue&>(*q1).connection());
  std::vector<unsigned char> out(4096), in(4096);
  fill(out, 9);
  std::vector<iovec> wiov = {{out.data(), out.size()}}, riov = {{in.data(), in.size()}};
  EXPECT_EQ(run(*q0, rw(IoOp::Write, 0, wiov)), 4096);
  EXPECT_EQ(run(*q1, rw(IoOp::Read, 0, riov)), 4096);
  EXPECT_EQ(in, out);
}

// Kills the server with requests parked in it (its delay filter holds every
// read and write for 30 s): each must come back with an error, later requests
// must fail at once, and after a restart the queue works again.
class NbdServerDeath : public NbdStorageTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(NbdServerDeath, FailsEveryRequestThenReconnects) {
  auto server = serve({"--filter=delay", "memory", "size=64M", "delay-read=30", "delay-write=30"});
  auto storage = open(std::string("#reconnect=100ms") + GetParam());
  ASSERT_TRUE(storage);
  auto queue = storage->open_queue(64);
  std::vector<std::vector<unsigned char>> buffers(64, std::vector<unsigned char>(4096));
  std::vector<iovec> iov(64);
  for (uint64_t i = 0; i < 64; ++i) {
    iov[i] = {buffers[i].data(), 4096};
    ASSERT_EQ(queue->submit({.op = i % 2 ? IoOp::Write : IoOp::Read, .offset = i * 4096, .iov = &iov[i], .iovcnt = 1,
                             .tag = i}),
              0);
  }
  queue->flush_submissions();
  server->kill();

  const auto failed = collect(*queue, 64);
  ASSERT_EQ(failed.size(), 64u) << "requests parked in a dead server must all be answered";
  std::vector<bool> seen(64);
  for (const IoCompletion& c : failed) {
    ASSERT_LT(c.tag, 64u);
    EXPECT_FALSE(seen[c.tag]) << "tag " << c.tag << " answered twice";
    seen[c.tag] = true;
    EXPECT_TRUE(c.result == -EIO || c.result == -ENOTCONN) << "tag " << c.tag << ": " << c.result;
  }
  EXPECT_EQ(queue->in_flight(), 0u);

  EXPECT_EQ(run(*queue, {.op = IoOp::Read, .offset = 0, .iov = &iov[0], .iovcnt = 1, .tag = 100}), -ENOTCONN);
  EXPECT_EQ(run(*queue, {.op = IoOp::Flush, .tag = 101}), -ENOTCONN);

  server = serve({"memory", "size=64M"});
  ASSERT_TRUE(wait_for_connects(*queue, 2)) << "no reconnect within 10 s";
  std::vector<unsigned char> out(8192), in(8192);
  fill(out, 5);
  std::vector<iovec> wiov = {{out.data(), out.size()}}, riov = {{in.data(), in.size()}};
  EXPECT_EQ(run(*queue, rw(IoOp::Write, 4096, wiov)), 8192);
  EXPECT_EQ(run(*queue, rw(IoOp::Read, 4096, riov)), 8192);
  EXPECT_EQ(in, out);
}

INSTANTIATE_TEST_SUITE_P(Connections, NbdServerDeath, ::testing::Values("", "&multi-conn=off"),
                         [](const auto& info) { return std::string(info.param).empty() ? "PerQueue" : "Shared"; });

TEST_F(NbdStorageTest, WithoutReconnectALostServerStaysLost) {
  auto server = serve({"memory", "size=64M"});
  auto storage = open("#reconnect=off");
  ASSERT_TRUE(storage);
  auto queue = storage->open_queue(4);
  std::vector<unsigned char> data(4096);
  std::vector<iovec> iov = {{data.data(), data.size()}};
  ASSERT_EQ(run(*queue, rw(IoOp::Read, 0, iov)), 4096);
  server->kill();
  // Until the I/O thread notices the hang-up a request may still be sent (and
  // fail with the connection); after that every request fails with -ENOTCONN.
  int32_t result = run(*queue, rw(IoOp::Read, 0, iov));
  EXPECT_LT(result, 0);
  if (result != -ENOTCONN) result = run(*queue, rw(IoOp::Read, 0, iov));
  EXPECT_EQ(result, -ENOTCONN);
  server = serve({"memory", "size=64M"});
  EXPECT_EQ(run(*queue, rw(IoOp::Read, 0, iov)), -ENOTCONN);
  EXPECT_EQ(dynamic_cast<NbdQueue&>(*queue).connection().connects(), 1u);
}

TEST_F(NbdStorageTest, RequestTimeoutFailsTheRequestAndResetsTheConnection) {
  auto server = serve({"--filter=delay", "memory", "size=64M", "delay-read=30"});
  auto storage = open("#timeout=200ms&reconnect=50ms");
  ASSERT_TRUE(storage);
  auto queue = storage->open_queue(4);
  std::vector<unsigned char> data(4096);
  fill(data, 4);
  std::vector<iovec> iov = {{data.data(), data.size()}};
  EXPECT_EQ(run(*queue, rw(IoOp::Read, 0, iov)), -ETIMEDOUT);
  // Writes are not delayed: once reconnected they succeed again.
  ASSERT_TRUE(wait_for_connects(*queue, 2));
  EXPECT_EQ(run(*queue, rw(IoOp::Write, 0, iov)), 4096);
}

TEST_F(NbdStorageTest, DestroyingAQueueWithRequestsInFlightDoesNotHang) {
  auto server = serve({"--filter=delay", "memory", "size=64M", "delay-read=30"});
  for (const char* settings : {"#timeout=300ms", "#timeout=300ms&multi-conn=off"}) {
    auto storage = open(settings);
    ASSERT_TRUE(storage);
    auto queue = storage->open_queue(8);
    std::vector<unsigned char> data(8 * 4096);
    std::vector<iovec> iov(8);
    for (unsigned i = 0; i < 8; ++i) {
      iov[i] = {data.data() + i * 4096, 4096};
      ASSERT_EQ(queue->submit({.op = IoOp::Read, .offset = i * 4096ull, .iov = &iov[i], .iovcnt = 1, .tag = i}), 0);
    }
    queue->flush_submissions();
    EXPECT_EQ(queue->in_flight(), 8u);
    queue.reset();  // returns once libnbd no longer holds the buffers
  }
}

}  // namespace
}  // namespace xbb::storage
