// Behaviour every storage kind must share, run against each of them: RAM, a
// file on disk and on tmpfs (buffered and O_DIRECT), and a loop device.
#include <poll.h>

#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <functional>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "StorageTestSupport.hpp"
#include "storage/Target.hpp"

namespace xbb::storage::test {
namespace {

constexpr uint64_t kDiskSize = 8 << 20;

// Builds one kind of storage; keeps whatever backs it alive.
class Backing {
 public:
  virtual ~Backing() = default;
  // Returns nullptr and sets `skip` when this environment cannot provide it.
  virtual std::unique_ptr<Storage> open(bool read_only, std::string& skip) = 0;
};

class RamBacking : public Backing {
 public:
  std::unique_ptr<Storage> open(bool read_only, std::string&) override {
    return open_target("ram:8M", {.read_only = read_only});
  }
};

class FileBacking : public Backing {
 public:
  FileBacking(std::string directory, bool direct) : file_(directory, kDiskSize), direct_(direct) {}
  std::unique_ptr<Storage> open(bool read_only, std::string& skip) override {
    try {
      return open_target("file:" + file_.path(), {.read_only = read_only, .direct_io = direct_});
    } catch (const StorageError& e) {
      // Only a filesystem refusing O_DIRECT is an environment limit; the
      // error must then say so (FileStorageTest checks that case directly).
      if (!direct_ || std::string(e.what()).find("O_DIRECT") == std::string::npos) throw;
      skip = e.what();
      return nullptr;
    }
  }

 private:
  TempFile file_;
  bool direct_;
};

class LoopBacking : public Backing {
 public:
  LoopBacking() : file_("/var/tmp", kDiskSize, "loop") {}
  std::unique_ptr<Storage> open(bool read_only, std::string& skip) override {
    if (!loop_) loop_ = LoopDevice::attach(file_.path(), false, skip);
    if (!loop_) return nullptr;
    return open_target(loop_->path(), {.read_only = read_only});
  }

 private:
  TempFile file_;
  std::unique_ptr<LoopDevice> loop_;
};

struct Kind {
  const char* name;
  std::function<std::unique_ptr<Backing>()> make;
};

void PrintTo(const Kind& kind, std::ostream* os) { *os << kind.name; }

const Kind kKinds[] = {
    {"ram", [] { return std::make_unique<RamBacking>(); }},
    {"file_var_tmp", [] { return std::make_unique<FileBacking>("/var/tmp", false); }},
    {"file_var_tmp_direct", [] { return std::make_unique<FileBacking>("/var/tmp", true); }},
    {"file_dev_shm", [] { return std::make_unique<FileBacking>("/dev/shm", false); }},
    {"file_dev_shm_direct", [] { return std::make_unique<FileBacking>("/dev/shm", true); }},
    {"loop_device", [] { return std::make_unique<LoopBacking>(); }},
};

class StorageConformance : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    backing_ = GetParam().make();
    std::string skip;
    storage_ = backing_->open(false, skip);
    if (!storage_) GTEST_SKIP() << GetParam().name << ": " << skip;
    queue_ = storage_->open_queue(16);
  }
  const Properties& props() const { return storage_->properties(); }

  std::unique_ptr<Backing> backing_;
  std::unique_ptr<Storage> storage_;
  std::unique_ptr<StorageQueue> queue_;
};

TEST_P(StorageConformance, ReportsSaneProperties) {
  EXPECT_EQ(props().size_bytes, kDiskSize);
  EXPECT_TRUE(std::has_single_bit(props().logical_block_size));
  EXPECT_GE(props().logical_block_size, 512u);
  EXPECT_GE(props().physical_block_size, props().logical_block_size);
  EXPECT_FALSE(props().read_only);
  EXPECT_TRUE(props().can_discard) << "every kind under test supports discard: " << storage_->describe();
  EXPECT_GE(props().discard_granularity, props().logical_block_size);
  EXPECT_FALSE(storage_->describe().empty());
  EXPECT_EQ(queue_->capacity(), 16u);
  EXPECT_EQ(queue_->in_flight(), 0u);
}

TEST_P(StorageConformance, ScatterGatherWriteReadsBackThroughADifferentSplit) {
  AlignedBuffer out(16384), in(16384);
  fill_pattern(out.span(), 42);
  // Write as 4K + 8K + 4K, read back as 12K + 4K, at an offset inside the disk.
  std::array<iovec, 3> wv{out.iov(0, 4096), out.iov(4096, 8192), out.iov(12288, 4096)};
  const IoCompletion w = run_one(*queue_, {IoOp::Write, 1 << 20, 0, wv.data(), 3, 7});
  EXPECT_EQ(w.tag, 7u);
  EXPECT_EQ(w.result, 16384);
  std::array<iovec, 2> rv{in.iov(0, 12288), in.iov(12288, 4096)};
  const IoCompletion r = run_one(*queue_, {IoOp::Read, 1 << 20, 0, rv.data(), 2, 8});
  EXPECT_EQ(r.tag, 8u);
  EXPECT_EQ(r.result, 16384);
  EXPECT_EQ(std::memcmp(out.data(), in.data(), 16384), 0);
  // Neighbouring blocks are untouched (still zero).
  AlignedBuffer around(4096);
  EXPECT_EQ(read_at(*queue_, (1 << 20) - 4096, around.span()), 4096);
  EXPECT_TRUE(all_zero(around.span()));
  EXPECT_EQ(read_at(*queue_, (1 << 20) + 16384, around.span()), 4096);
  EXPECT_TRUE(all_zero(around.span()));
}

TEST_P(StorageConformance, LastBlockIsReachable) {
  AlignedBuffer out(4096), in(4096);
  fill_pattern(out.span(), 9);
  EXPECT_EQ(write_at(*queue_, kDiskSize - 4096, out.span()), 4096);
  EXPECT_EQ(read_at(*queue_, kDiskSize - 4096, in.span()), 4096);
  EXPECT_EQ(std::memcmp(out.data(), in.data(), 4096), 0);
}

TEST_P(StorageConformance, FlushSucceedsAfterWrites) {
  AlignedBuffer out(8192);
  fill_pattern(out.span(), 3);
  EXPECT_EQ(write_at(*queue_, 0, out.span()), 8192);
  EXPECT_EQ(flush(*queue_), 0);
  EXPECT_EQ(flush(*queue_), 0);  // and with nothing dirty
}

TEST_P(StorageConformance, DiscardReadsBackZerosAndSparesNeighbours) {
  const uint64_t g = props().discard_granularity;
  AlignedBuffer out(4 * g), in(4 * g);
  fill_pattern(out.span(), 77);
  EXPECT_EQ(write_at(*queue_, 4 * g, out.span()), static_cast<int32_t>(4 * g));
  EXPECT_EQ(discard_at(*queue_, 5 * g, 2 * g), 0);
  EXPECT_EQ(read_at(*queue_, 4 * g, in.span()), static_cast<int32_t>(4 * g));
  EXPECT_EQ(std::memcmp(in.data(), out.data(), g), 0) << "block before the discard changed";
  EXPECT_TRUE(all_zero(in.span().subspan(g, 2 * g))) << "discarded range does not read back as zeros";
  EXPECT_EQ(std::memcmp(in.data() + 3 * g, out.data() + 3 * g, g), 0) << "block after the discard changed";
}

TEST_P(StorageConformance, SecureDiscardMatchesWhatIsAdvertised) {
  const int rc = queue_->submit({IoOp::SecureDiscard, 0, 4096, nullptr, 0, 5});
  if (!props().can_secure_discard) {
    EXPECT_EQ(rc, -EOPNOTSUPP);
    EXPECT_EQ(queue_->in_flight(), 0u);
    return;
  }
  ASSERT_EQ(rc, 0);
  queue_->flush_submissions();
  auto done = wait_for(*queue_, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].result, 0);
}

TEST_P(StorageConformance, RejectsMalformedAndOutOfRangeRequestsAtSubmit) {
  AlignedBuffer buf(8192);
  iovec v = buf.iov(0, 8192);
  iovec half = buf.iov(0, 4096);
  const uint64_t lbs = props().logical_block_size;
  struct Case {
    const char* what;
    IoRequest request;
  } cases[] = {
      {"read crossing the end", {IoOp::Read, kDiskSize - 4096, 0, &v, 1, 1}},
      {"write crossing the end", {IoOp::Write, kDiskSize - 4096, 0, &v, 1, 1}},
      {"read at the end", {IoOp::Read, kDiskSize, 0, &half, 1, 1}},
      {"offset overflowing", {IoOp::Read, UINT64_MAX - 4095, 0, &half, 1, 1}},
      {"discard crossing the end", {IoOp::Discard, kDiskSize - 4096, 8192, nullptr, 0, 1}},
      {"discard of zero bytes", {IoOp::Discard, 0, 0, nullptr, 0, 1}},
      {"misaligned offset", {IoOp::Read, lbs / 2, 0, &half, 1, 1}},
      {"no iovecs", {IoOp::Read, 0, 0, nullptr, 0, 1}},
      {"null iovec array", {IoOp::Write, 0, 0, nullptr, 1, 1}},
  };
  for (const Case& c : cases) EXPECT_EQ(queue_->submit(c.request), -EINVAL) << c.what;
  iovec odd{buf.data(), 100};
  EXPECT_EQ(queue_->submit({IoOp::Write, 0, 0, &odd, 1, 1}), -EINVAL) << "length not a block multiple";
  EXPECT_EQ(queue_->in_flight(), 0u);
  std::array<IoCompletion, 4> none{};
  EXPECT_EQ(queue_->reap(none), 0u) << "a rejected request must not complete";
}

TEST_P(StorageConformance, ReadOnlyRejectsWritesAndDiscardsButReads) {
  std::string skip;
  auto ro = backing_->open(true, skip);
  ASSERT_TRUE(ro) << skip;
  EXPECT_TRUE(ro->properties().read_only);
  auto q = ro->open_queue(4);
  AlignedBuffer buf(4096);
  iovec v = buf.iov(0, 4096);
  EXPECT_EQ(q->submit({IoOp::Write, 0, 0, &v, 1, 1}), -EROFS);
  EXPECT_EQ(q->submit({IoOp::Discard, 0, 4096, nullptr, 0, 2}), -EROFS);
  EXPECT_EQ(q->submit({IoOp::SecureDiscard, 0, 4096, nullptr, 0, 3}), -EROFS);
  EXPECT_EQ(q->in_flight(), 0u);
  EXPECT_EQ(read_at(*q, 0, buf.span()), 4096);
  EXPECT_EQ(flush(*q), 0);
}

TEST_P(StorageConformance, ReturnsEagainAtCapacityUntilReaped) {
  auto q = storage_->open_queue(4);
  AlignedBuffer buf(4 * 4096);
  std::array<iovec, 5> v{buf.iov(0, 4096), buf.iov(4096, 4096), buf.iov(8192, 4096), buf.iov(12288, 4096),
                         buf.iov(0, 4096)};
  for (unsigned i = 0; i < 4; ++i) ASSERT_EQ(q->submit({IoOp::Read, i * 4096ull, 0, &v[i], 1, i}), 0);
  EXPECT_EQ(q->in_flight(), 4u);
  EXPECT_EQ(q->submit({IoOp::Read, 0, 0, &v[4], 1, 4}), -EAGAIN);
  EXPECT_EQ(q->submit({IoOp::Flush, 0, 0, nullptr, 0, 4}), -EAGAIN);
  q->flush_submissions();
  auto done = wait_for(*q, 4);
  ASSERT_EQ(done.size(), 4u);
  uint64_t tags = 0;
  for (const auto& c : done) {
    EXPECT_EQ(c.result, 4096);
    tags |= 1ull << c.tag;
  }
  EXPECT_EQ(tags, 0xFu) << "every tag completes exactly once";
  EXPECT_EQ(q->in_flight(), 0u);
  EXPECT_EQ(run_one(*q, {IoOp::Read, 0, 0, &v[4], 1, 9}).result, 4096);
}

TEST_P(StorageConformance, ReapHonoursASmallOutputSpanAndKeepsTheFdReadable) {
  AlignedBuffer buf(4096);
  iovec v = buf.iov(0, 4096);
  for (unsigned i = 0; i < 3; ++i) ASSERT_EQ(queue_->submit({IoOp::Read, 0, 0, &v, 1, i}), 0);
  queue_->flush_submissions();
  size_t got = 0;
  std::array<IoCompletion, 1> one{};
  while (got < 3) {
    pollfd pfd{queue_->completion_fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&pfd, 1, 60'000), 1) << "completion_fd not readable with " << 3 - got << " outstanding";
    got += queue_->reap(one);
  }
  EXPECT_EQ(queue_->in_flight(), 0u);
}

// Two queues on two threads, each hammering its own half of the disk with
// random reads, writes, discards and flushes, several in flight at once, every
// read checked against a model of what the half must contain.
class RandomWorker {
 public:
  static constexpr uint64_t kBlock = 4096;
  static constexpr unsigned kDepth = 8;
  static constexpr unsigned kMaxBlocks = 8;

  RandomWorker(std::unique_ptr<StorageQueue> queue, uint64_t first_block, uint64_t blocks, bool discard,
               uint32_t seed)
      : queue_(std::move(queue)),
        first_(first_block),
        version_(blocks, 0),
        busy_(blocks, false),
        discard_(discard),
        rng_(seed) {
    for (unsigned i = 0; i < kDepth; ++i) ops_.push_back({std::make_unique<AlignedBuffer>(kMaxBlocks * kBlock)});
  }

  void run(unsigned total) {
    unsigned issued = 0, completed = 0;
    std::array<IoCompletion, kDepth> done{};
    while (completed < total && failures_ == 0) {
      while (issued < total && queue_->in_flight() < kDepth && issue()) ++issued;
      queue_->flush_submissions();
      pollfd pfd{queue_->completion_fd(), POLLIN, 0};
      if (::poll(&pfd, 1, 60'000) != 1) {
        ADD_FAILURE() << "hang: " << queue_->in_flight() << " in flight";
        return;
      }
      const size_t n = queue_->reap(done);
      for (size_t i = 0; i < n; ++i) complete(done[i]);
      completed += static_cast<unsigned>(n);
    }
    EXPECT_EQ(failures_, 0u);
  }

 private:
  struct Op {
    std::unique_ptr<AlignedBuffer> buffer;
    bool free = true;
    IoOp op = IoOp::Read;
    uint64_t block = 0, count = 0;
    uint64_t version = 0;
    iovec iov[2]{};
  };

  static uint64_t seed_for(uint64_t block, uint64_t version) { return block * 1'000'003 + version; }

  bool issue() {
    unsigned slot = 0;
    while (!ops_[slot].free) ++slot;
    Op& op = ops_[slot];
    const unsigned roll = rng_() % 100;
    op.op = roll < 45 ? IoOp::Write : roll < 85 ? IoOp::Read : roll < 95 && discard_ ? IoOp::Discard : IoOp::Flush;
    op.count = 1 + rng_() % kMaxBlocks;
    op.block = rng_() % (version_.size() - op.count + 1);
    if (op.op != IoOp::Flush) {
      for (uint64_t b = op.block; b < op.block + op.count; ++b)
        if (busy_[b]) return false;  // overlaps an in-flight request: try later
      for (uint64_t b = op.block; b < op.block + op.count; ++b) busy_[b] = true;
    }
    op.version = ++next_version_;
    const uint64_t bytes = op.count * kBlock;
    if (op.op == IoOp::Write)
      for (uint64_t i = 0; i < op.count; ++i)
        fill_pattern(op.buffer->span().subspan(i * kBlock, kBlock), seed_for(first_ + op.block + i, op.version));
    // Split the buffer into two iovecs when possible, to exercise scatter-gather.
    const uint64_t split = op.count > 1 ? (1 + rng_() % (op.count - 1)) * kBlock : bytes;
    op.iov[0] = op.buffer->iov(0, split);
    op.iov[1] = op.buffer->iov(split, bytes - split);
    const IoRequest request{op.op, (first_ + op.block) * kBlock, op.op == IoOp::Discard ? bytes : 0, op.iov,
                            split == bytes ? 1u : 2u, slot};
    const int rc = queue_->submit(request);
    EXPECT_EQ(rc, 0);
    if (rc != 0) {
      ++failures_;
      return false;
    }
    op.free = false;
    return true;
  }

  void complete(const IoCompletion& c) {
    Op& op = ops_.at(c.tag);
    op.free = true;
    const int32_t expect = op.op == IoOp::Read || op.op == IoOp::Write ? static_cast<int32_t>(op.count * kBlock) : 0;
    if (c.result != expect) {
      ADD_FAILURE() << "op " << static_cast<int>(op.op) << " at block " << first_ + op.block << " returned "
                    << c.result;
      ++failures_;
    }
    if (op.op == IoOp::Flush) return;
    AlignedBuffer expected(kBlock);
    for (uint64_t i = 0; i < op.count; ++i) {
      const uint64_t b = op.block + i;
      busy_[b] = false;
      if (op.op == IoOp::Write) version_[b] = op.version;
      if (op.op == IoOp::Discard) version_[b] = 0;
      if (op.op != IoOp::Read) continue;
      if (version_[b] == 0)
        std::memset(expected.data(), 0, kBlock);
      else
        fill_pattern(expected.span(), seed_for(first_ + b, version_[b]));
      if (std::memcmp(expected.data(), op.buffer->data() + i * kBlock, kBlock) != 0 && failures_++ == 0)
        ADD_FAILURE() << "block " << first_ + b << " does not hold version " << version_[b];
    }
  }

  std::unique_ptr<StorageQueue> queue_;
  uint64_t first_;
  std::vector<uint64_t> version_;  // 0: zeros (never written, or discarded)
  std::vector<bool> busy_;
  bool discard_;
  std::mt19937 rng_;
  std::vector<Op> ops_;
  uint64_t next_version_ = 0;
  unsigned failures_ = 0;
};

TEST_P(StorageConformance, RandomizedTwoQueuesOnTwoThreadsMatchAReferenceModel) {
  const uint64_t half = kDiskSize / RandomWorker::kBlock / 2;
  // Queues are opened here and used on other threads, as the engine does.
  RandomWorker a(storage_->open_queue(RandomWorker::kDepth), 0, half, props().can_discard, 1234);
  RandomWorker b(storage_->open_queue(RandomWorker::kDepth), half, half, props().can_discard, 5678);
  std::thread ta([&] { a.run(2500); });
  std::thread tb([&] { b.run(2500); });
  ta.join();
  tb.join();
}

INSTANTIATE_TEST_SUITE_P(AllKinds, StorageConformance, ::testing::ValuesIn(kKinds),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace xbb::storage::test
