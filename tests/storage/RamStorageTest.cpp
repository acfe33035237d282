// RamStorage specifics: lazy allocation, image preload (md's fixed mode),
// flush and discard semantics, completion signalling.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <gtest/gtest.h>

#include "StorageTestSupport.hpp"
#include "storage/ram/RamStorage.hpp"

namespace xbb::storage::test {
namespace {

TEST(RamStorage, HugeDiskCostsNothingUntilWritten) {
  // 64 GiB of address space, MAP_NORESERVE: creating it must not commit memory.
  auto ram = RamStorage::create(64ull << 30, "", {});
  EXPECT_EQ(ram->properties().size_bytes, 64ull << 30);
  EXPECT_EQ(ram->describe(), "ram:64G");
  auto q = ram->open_queue(2);
  AlignedBuffer out(4096), in(4096);
  fill_pattern(out.span(), 1);
  EXPECT_EQ(write_at(*q, (64ull << 30) - 4096, out.span()), 4096);
  EXPECT_EQ(read_at(*q, (64ull << 30) - 4096, in.span()), 4096);
  EXPECT_EQ(std::memcmp(in.data(), out.data(), 4096), 0);
}

TEST(RamStorage, FlushIsANoOpThatSucceeds) {
  auto ram = RamStorage::create(1 << 20, "", {});
  EXPECT_FALSE(ram->properties().can_flush);
  auto q = ram->open_queue(1);
  EXPECT_EQ(flush(*q), 0);
}

TEST(RamStorage, DiscardZeroesPartialPagesExactly) {
  auto ram = RamStorage::create(1 << 20, "", {});
  EXPECT_TRUE(ram->properties().can_discard);
  EXPECT_EQ(ram->properties().discard_granularity, 4096u);
  auto q = ram->open_queue(1);
  AlignedBuffer out(65536), in(65536);
  fill_pattern(out.span(), 2);
  ASSERT_EQ(write_at(*q, 0, out.span()), 65536);
  // 512 bytes into page 1 up to 1024 bytes into page 5: edges by memset, whole pages by madvise.
  const uint64_t begin = 4096 + 512, end = 5 * 4096 + 1024;
  ASSERT_EQ(discard_at(*q, begin, end - begin), 0);
  ASSERT_EQ(read_at(*q, 0, in.span()), 65536);
  EXPECT_EQ(std::memcmp(in.data(), out.data(), begin), 0);
  EXPECT_TRUE(all_zero(in.span().subspan(begin, end - begin)));
  EXPECT_EQ(std::memcmp(in.data() + end, out.data() + end, 65536 - end), 0);
}

TEST(RamStorage, ImagePreloadsTheDiskAndIsNeverWritten) {
  TempFile image("/var/tmp", 3 << 20, "ramimage");
  AlignedBuffer data(8192);
  fill_pattern(data.span(), 33);
  {
    const int fd = ::open(image.path().c_str(), O_WRONLY);
    ASSERT_EQ(::pwrite(fd, data.data(), 8192, 1 << 20), 8192);  // data between two holes
    ::close(fd);
  }
  auto ram = RamStorage::create(4 << 20, image.path(), {});
  EXPECT_EQ(ram->describe(), "ram:4M:" + image.path());
  auto q = ram->open_queue(2);
  AlignedBuffer back(8192), zero(8192);
  ASSERT_EQ(read_at(*q, 1 << 20, back.span()), 8192);
  EXPECT_EQ(std::memcmp(back.data(), data.data(), 8192), 0);
  ASSERT_EQ(read_at(*q, 0, zero.span()), 8192);
  EXPECT_TRUE(all_zero(zero.span()));
  ASSERT_EQ(read_at(*q, (4 << 20) - 8192, zero.span()), 8192);
  EXPECT_TRUE(all_zero(zero.span())) << "beyond the image the disk is zero";
  ASSERT_EQ(write_at(*q, 1 << 20, zero.span()), 8192);
  const int fd = ::open(image.path().c_str(), O_RDONLY);
  ASSERT_EQ(::pread(fd, back.data(), 8192, 1 << 20), 8192);
  ::close(fd);
  EXPECT_EQ(std::memcmp(back.data(), data.data(), 8192), 0) << "writes must not reach the image";
}

TEST(RamStorage, SizeFromImageRoundsUpTo512) {
  TempFile image("/var/tmp", 1000, "ramimage");
  auto ram = RamStorage::create(0, image.path(), {});
  EXPECT_EQ(ram->properties().size_bytes, 1024u);
}

TEST(RamStorage, SubmitCompletesAtOnceAndSignalsTheFd) {
  auto ram = RamStorage::create(1 << 20, "", {});
  auto q = ram->open_queue(8);
  pollfd pfd{q->completion_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 0), 0) << "nothing to reap yet";
  ASSERT_EQ(q->submit({IoOp::Flush, 0, 0, nullptr, 0, 5}), 0);
  ASSERT_EQ(q->submit({IoOp::Flush, 0, 0, nullptr, 0, 6}), 0);
  EXPECT_EQ(::poll(&pfd, 1, 0), 1) << "completions are signalled without flush_submissions";
  std::array<IoCompletion, 8> out{};
  ASSERT_EQ(q->reap(out), 2u);
  EXPECT_EQ(out[0].tag, 5u);
  EXPECT_EQ(out[1].tag, 6u);
  EXPECT_EQ(::poll(&pfd, 1, 0), 0) << "reaped everything: the fd is quiet again";
}

TEST(RamStorage, BadSizesAreRefused) {
  EXPECT_NE(error_of([] { RamStorage::create(0, "", {}); }).find("must not be zero"), std::string::npos);
  EXPECT_NE(error_of([] { RamStorage::create(1000, "", {}); }).find("not a multiple of 512"), std::string::npos);
  EXPECT_NE(error_of([] { RamStorage::create(1 << 20, "", {}).get()->open_queue(0); }).find("queue depth"),
            std::string::npos);
}

}  // namespace
}  // namespace xbb::storage::test
