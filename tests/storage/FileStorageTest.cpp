// FileStorage specifics: sparseness, hole punching, the discard probe, O_DIRECT,
// short transfers and the administrator-facing errors.
#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <gtest/gtest.h>

#include "StorageTestSupport.hpp"
#include "storage/file/FileStorage.hpp"
#include "storage/OpenError.hpp"
#include "storage/file/UringQueue.hpp"

namespace xbb::storage::test {
namespace {

struct stat stat_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st;
}

// An independent answer to "can this directory's filesystem punch holes?".
bool filesystem_punches_holes(const std::string& directory) {
  TempFile probe(directory, 0, "probe");
  const int fd = ::open(probe.path().c_str(), O_RDWR);
  std::vector<unsigned char> data(65536, 0xAB);
  const bool ok = ::pwrite(fd, data.data(), data.size(), 0) == static_cast<ssize_t>(data.size()) &&
                  ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 65536) == 0;
  ::close(fd);
  return ok;
}

void write_file(const std::string& path, uint64_t offset, std::span<const unsigned char> data) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset)), static_cast<ssize_t>(data.size()));
  ::close(fd);
}

class FileStorageOn : public ::testing::TestWithParam<const char*> {};

TEST_P(FileStorageOn, OpenDoesNotAllocateAndHolesReadAsZeros) {
  TempFile file(GetParam(), 64 << 20);
  auto storage = FileStorage::open(file.path(), {});
  EXPECT_EQ(storage->properties().size_bytes, 64u << 20);
  EXPECT_EQ(stat_of(file.path()).st_blocks, 0) << "opening must not allocate";
  auto q = storage->open_queue(4);
  AlignedBuffer buf(65536);
  std::memset(buf.data(), 0xFF, buf.size());
  EXPECT_EQ(read_at(*q, 32 << 20, buf.span()), 65536);
  EXPECT_TRUE(all_zero(buf.span()));
  EXPECT_EQ(stat_of(file.path()).st_blocks, 0) << "reading a hole must not allocate";
  EXPECT_EQ(storage->describe(), "file:" + file.path());
}

TEST_P(FileStorageOn, DiscardSupportIsProbedAndPunchesHoles) {
  TempFile file(GetParam(), 4 << 20);
  auto storage = FileStorage::open(file.path(), {});
  const Properties& p = storage->properties();
  EXPECT_EQ(p.can_discard, filesystem_punches_holes(GetParam()));
  EXPECT_FALSE(p.can_secure_discard);
  if (!p.can_discard) GTEST_SKIP() << GetParam() << " cannot punch holes; discard is correctly not offered";
  EXPECT_EQ(p.discard_granularity, static_cast<uint32_t>(stat_of(file.path()).st_blksize));
  auto q = storage->open_queue(4);
  AlignedBuffer data(1 << 20);
  fill_pattern(data.span(), 5);
  ASSERT_EQ(write_at(*q, 1 << 20, data.span()), 1 << 20);
  ASSERT_EQ(flush(*q), 0);
  const auto before = stat_of(file.path()).st_blocks;
  ASSERT_GE(before, (1 << 20) / 512);
  ASSERT_EQ(discard_at(*q, 1 << 20, 1 << 20), 0);
  EXPECT_LT(stat_of(file.path()).st_blocks, before) << "discard must free the blocks";
  EXPECT_EQ(stat_of(file.path()).st_size, 4 << 20) << "discard must keep the size";
}

TEST_P(FileStorageOn, DiscardProbeLeavesDataSizeAndAllocationAlone) {
  TempFile file(GetParam(), 1 << 20);
  AlignedBuffer data(1 << 20);
  fill_pattern(data.span(), 11);
  write_file(file.path(), 0, data.span());
  ::sync();
  const auto before = stat_of(file.path());
  auto storage = FileStorage::open(file.path(), {});
  const auto after = stat_of(file.path());
  EXPECT_EQ(after.st_size, before.st_size);
  EXPECT_EQ(after.st_blocks, before.st_blocks);
  auto q = storage->open_queue(1);
  AlignedBuffer back(1 << 20);
  ASSERT_EQ(read_at(*q, 0, back.span()), 1 << 20);
  EXPECT_EQ(std::memcmp(back.data(), data.data(), 1 << 20), 0);
}

TEST_P(FileStorageOn, DirectIoWorksOrFailsWithAClearError) {
  TempFile file(GetParam(), 1 << 20);
  std::unique_ptr<FileStorage> storage;
  try {
    storage = FileStorage::open(file.path(), {.direct_io = true});
  } catch (const StorageError& e) {
    EXPECT_NE(std::string(e.what()).find("does not support O_DIRECT"), std::string::npos) << e.what();
    GTEST_SKIP() << GetParam() << " refuses O_DIRECT, reported as: " << e.what();
  }
  EXPECT_TRUE(storage->direct_io());
  const uint32_t lbs = storage->properties().logical_block_size;
  EXPECT_TRUE(std::has_single_bit(lbs));
  auto q = storage->open_queue(2);
  AlignedBuffer out(8192), in(8192);
  fill_pattern(out.span(), 8);
  EXPECT_EQ(write_at(*q, 8192, out.span()), 8192);
  EXPECT_EQ(read_at(*q, 8192, in.span()), 8192);
  EXPECT_EQ(std::memcmp(in.data(), out.data(), 8192), 0);
  // A buffer that is not aligned is refused at submit, not left to the kernel.
  iovec misaligned{in.data() + 1, lbs};
  EXPECT_EQ(q->submit({IoOp::Read, 0, 0, &misaligned, 1, 1}), -EINVAL);
}

INSTANTIATE_TEST_SUITE_P(Filesystems, FileStorageOn, ::testing::Values("/var/tmp", "/dev/shm"),
                         [](const auto& info) { return std::string(info.param).substr(1) == "var/tmp" ? "var_tmp" : "dev_shm"; });

TEST(FileStorage, ReadOnlyOffersNoDiscard) {
  TempFile file("/var/tmp", 1 << 20);
  auto storage = FileStorage::open(file.path(), {.read_only = true});
  EXPECT_TRUE(storage->properties().read_only);
  EXPECT_FALSE(storage->properties().can_discard);
  EXPECT_TRUE(storage->properties().can_flush);
}

// On /dev/shm the transfer runs inline (see UringQueue.hpp), on /var/tmp
// through io_uring: the same contract either way.
TEST_P(FileStorageOn, ShortReadOfAShrunkFileIsResumedThenFailsWithEio) {
  TempFile file(GetParam(), 1 << 20);
  auto storage = FileStorage::open(file.path(), {});
  auto q = storage->open_queue(2);
  // Someone truncates the image underneath: the first readv returns 4096 of
  // 8192 bytes, the resumed remainder returns 0. That must be an error, never
  // a successful partial read.
  ASSERT_EQ(::truncate(file.path().c_str(), (512 << 10) + 4096), 0);
  AlignedBuffer buf(8192);
  EXPECT_EQ(read_at(*q, 512 << 10, buf.span()), -EIO);
  EXPECT_EQ(q->in_flight(), 0u);
  // Entirely below the new end still works.
  EXPECT_EQ(read_at(*q, (512 << 10) - 4096, buf.span()), 8192);
}

// A tmpfs file is mapped, and its reads and writes run inside submit() (a
// read is a memcpy, or preadv where the file has holes; a write is pwritev);
// the completion still arrives through completion_fd() and reap().
TEST(FileStorage, TmpfsFilesAreTransferredInlineWithTheUsualCompletions) {
  TempFile disk_file("/var/tmp", 1 << 20);
  auto disk_queue = FileStorage::open(disk_file.path(), {})->open_queue(2);
  ASSERT_NE(dynamic_cast<UringQueue*>(disk_queue.get()), nullptr);
  EXPECT_FALSE(dynamic_cast<UringQueue*>(disk_queue.get())->inline_io()) << "ext4/xfs do non-blocking I/O";

  TempFile file("/dev/shm", 1 << 20);
  auto storage = FileStorage::open(file.path(), {});
  auto q = storage->open_queue(4);
  auto* uring = dynamic_cast<UringQueue*>(q.get());
  ASSERT_NE(uring, nullptr);
  if (!on_tmpfs("/dev/shm")) GTEST_SKIP() << "/dev/shm is not tmpfs here";
  ASSERT_TRUE(uring->inline_io()) << "a tmpfs file is mapped, and mapped copies run inline";

  // A write over three unevenly split buffers.
  AlignedBuffer data(3 * 4096);
  fill_pattern(data.span(), 7);
  iovec out[3] = {{data.data(), 512}, {data.data() + 512, 7680}, {data.data() + 8192, 4096}};
  IoRequest write;
  write.op = IoOp::Write;
  write.offset = 64 << 10;
  write.iov = out;
  write.iovcnt = 3;
  write.tag = 41;
  ASSERT_EQ(q->submit(write), 0);
  q->flush_submissions();
  EXPECT_EQ(q->in_flight(), 1u);
  EXPECT_TRUE(q->has_completions());
  pollfd p{q->completion_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 1) << "the completion fd signals the inline completion";
  IoCompletion done[4];
  ASSERT_EQ(q->reap(done), 1u);
  EXPECT_EQ(done[0].tag, 41u);
  EXPECT_EQ(done[0].result, 3 * 4096);
  EXPECT_EQ(q->in_flight(), 0u);
  EXPECT_FALSE(q->has_completions());
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "nothing left to reap: the fd is quiet";

  // Read back with another split; the file holds exactly what was written.
  AlignedBuffer back(3 * 4096);
  EXPECT_EQ(read_at(*q, 64 << 10, back.span()), 3 * 4096);
  EXPECT_EQ(std::memcmp(back.data(), data.data(), back.size()), 0);
  std::vector<unsigned char> direct(3 * 4096);
  const int rfd = ::open(file.path().c_str(), O_RDONLY);
  ASSERT_EQ(::pread(rfd, direct.data(), direct.size(), 64 << 10), static_cast<ssize_t>(direct.size()));
  ::close(rfd);
  EXPECT_EQ(std::memcmp(direct.data(), data.data(), direct.size()), 0);
}

TEST(FileStorage, ErrorsSayWhatIsWrong) {
  TempDir dir;
  const std::string empty = dir.path() + "/empty.img";
  ::close(::open(empty.c_str(), O_CREAT | O_WRONLY, 0600));
  EXPECT_NE(error_of([&] { FileStorage::open(empty, {}); }).find("is empty"), std::string::npos);

  const std::string odd = dir.path() + "/odd.img";
  ::close(::open(odd.c_str(), O_CREAT | O_WRONLY, 0600));
  ASSERT_EQ(::truncate(odd.c_str(), 1000), 0);
  EXPECT_NE(error_of([&] { FileStorage::open(odd, {}); }).find("not a multiple of 512"), std::string::npos);

  const std::string fifo = dir.path() + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_NE(error_of([&] { FileStorage::open(fifo, {.read_only = true}); }).find("a FIFO"), std::string::npos)
      << "refused before open(), which would block on a FIFO";

  EXPECT_NE(error_of([&] { FileStorage::open(dir.path() + "/missing.img", {}); }).find("does not exist"),
            std::string::npos);
  // A directory opens O_RDONLY but is refused as "not a regular file".
  EXPECT_NE(error_of([&] { FileStorage::open(dir.path(), {}); }).find("a directory, not a regular file"),
            std::string::npos);
}

TEST(FileStorage, PermissionDeniedSuggestsReadOnly) {
  EXPECT_NE(std::string(open_error("file", "/x.img", EACCES, true).what()).find("permission denied"),
            std::string::npos);
  EXPECT_NE(std::string(open_error("file", "/x.img", EACCES, true).what()).find("read-only"), std::string::npos);
  EXPECT_NE(std::string(open_error("file", "/x.img", EROFS, true).what()).find("read-only filesystem"),
            std::string::npos);
  if (::geteuid() == 0) GTEST_SKIP() << "root bypasses file permissions; only the message mapping is checked";
  TempFile file("/var/tmp", 4096);
  ASSERT_EQ(::chmod(file.path().c_str(), 0400), 0);
  EXPECT_NE(error_of([&] { FileStorage::open(file.path(), {}); }).find("permission denied"), std::string::npos);
  EXPECT_NO_THROW(FileStorage::open(file.path(), {.read_only = true}));
}

// Claims: an OFD write lock for a writable disk, a read lock for a read-only
// one, on a descriptor of their own; what QEMU's image locking also sees.
TEST(FileStorageClaim, WritersExcludeEveryoneReadersShare) {
  TempFile file("/var/tmp", 1 << 20, "claim");
  auto storage = FileStorage::open(file.path(), {});
  auto writer = storage->claim(true);
  ASSERT_NE(writer, nullptr);
  auto message_of = [&](bool writable) {
    try {
      auto other = FileStorage::open(file.path(), {.read_only = !writable});
      other->claim(writable);
    } catch (const StorageInUse& e) {
      return std::string(e.what());
    }
    return std::string("claimed");
  };
  EXPECT_NE(message_of(true).find("is in use"), std::string::npos) << message_of(true);
  EXPECT_NE(message_of(false).find("is in use"), std::string::npos) << "a reader of an image being written";
  EXPECT_NE(message_of(true).find(file.path()), std::string::npos);

  // The lock is what another process sees too (F_OFD_GETLK from a plain descriptor).
  const int fd = ::open(file.path().c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  struct flock probe {};
  probe.l_type = F_RDLCK;
  probe.l_whence = SEEK_SET;
  ASSERT_EQ(::fcntl(fd, F_OFD_GETLK, &probe), 0);
  EXPECT_EQ(probe.l_type, F_WRLCK) << "no write lock visible on the image";
  ::close(fd);

  // Released with the claim, not the storage; readers then share.
  writer.reset();
  auto reader_a = FileStorage::open(file.path(), {.read_only = true})->claim(false);
  auto reader_b = FileStorage::open(file.path(), {.read_only = true})->claim(false);
  EXPECT_NE(reader_a, nullptr);
  EXPECT_NE(reader_b, nullptr);
  EXPECT_NE(message_of(true).find("is in use"), std::string::npos) << "a writer of an image being read";
  reader_a.reset();
  reader_b.reset();
  EXPECT_EQ(message_of(true), "claimed");
}

TEST(FileStorageClaim, CurrentSizeFollowsTheFile) {
  TempFile file("/var/tmp", 1 << 20, "size");
  auto storage = FileStorage::open(file.path(), {});
  EXPECT_EQ(storage->current_size(), std::optional<uint64_t>(1 << 20));
  ASSERT_EQ(::truncate(file.path().c_str(), 3 << 20), 0);
  EXPECT_EQ(storage->current_size(), std::optional<uint64_t>(3 << 20));
  EXPECT_EQ(storage->properties().size_bytes, 1u << 20) << "properties stay what they were at open";
}

}  // namespace
}  // namespace xbb::storage::test

namespace xbb::storage::test {
namespace {

UringQueue& as_uring(StorageQueue& queue) {
  auto* uring = dynamic_cast<UringQueue*>(&queue);
  EXPECT_NE(uring, nullptr);
  return *uring;
}

// Reads go through the mapping where the image has pages and through preadv
// where it has holes; writes through pwritev. The image stays exactly as
// sparse as it would with system calls alone.
TEST(FileStorage, TmpfsImagesCopyThroughTheMappingAndStaySparse) {
  if (!on_tmpfs("/dev/shm")) GTEST_SKIP() << "/dev/shm is not tmpfs here";
  TempFile file("/dev/shm", 4 << 20);
  auto storage = FileStorage::open(file.path(), {});
  ASSERT_TRUE(storage->properties().can_discard);
  auto q = storage->open_queue(4);
  UringQueue& uring = as_uring(*q);
  AlignedBuffer buf(65536);

  std::memset(buf.data(), 0xFF, buf.size());
  EXPECT_EQ(read_at(*q, 1 << 20, buf.span()), 65536);
  EXPECT_TRUE(all_zero(buf.span()));
  EXPECT_EQ(uring.mapped_transfers(), 0u) << "a hole is read with preadv";
  EXPECT_EQ(stat_of(file.path()).st_blocks, 0) << "reading a hole must not allocate";

  AlignedBuffer data(65536);
  fill_pattern(data.span(), 12);
  EXPECT_EQ(write_at(*q, 2 << 20, data.span()), 65536);
  EXPECT_EQ(uring.mapped_transfers(), 0u) << "a write into a hole goes through pwritev";
  EXPECT_EQ(stat_of(file.path()).st_blocks, 65536 / 512);
  EXPECT_EQ(read_at(*q, 2 << 20, buf.span()), 65536);
  EXPECT_EQ(std::memcmp(buf.data(), data.data(), buf.size()), 0);
  EXPECT_EQ(uring.mapped_transfers(), 1u) << "once written, the range is read through the mapping";
  fill_pattern(data.span(), 13);
  EXPECT_EQ(write_at(*q, 2 << 20, data.span()), 65536);
  EXPECT_EQ(uring.mapped_transfers(), 1u) << "writes always use pwritev";

  // Another queue of the same image shares what is known about its holes.
  auto q2 = storage->open_queue(4);
  EXPECT_EQ(read_at(*q2, 2 << 20, buf.span()), 65536);
  EXPECT_EQ(std::memcmp(buf.data(), data.data(), buf.size()), 0);
  EXPECT_EQ(as_uring(*q2).mapped_transfers(), 1u);

  ASSERT_EQ(discard_at(*q, 2 << 20, 65536), 0);
  EXPECT_EQ(stat_of(file.path()).st_blocks, 0) << "the discard freed the pages";
  std::memset(buf.data(), 0xFF, buf.size());
  EXPECT_EQ(read_at(*q2, 2 << 20, buf.span()), 65536);
  EXPECT_TRUE(all_zero(buf.span()));
  EXPECT_EQ(as_uring(*q2).mapped_transfers(), 1u) << "a discarded range is a hole again";
  EXPECT_EQ(stat_of(file.path()).st_blocks, 0) << "reading it back must not allocate";
}

// The mapped twin of ShortReadOfAShrunkFileIsResumedThenFailsWithEio: the
// copy takes a SIGBUS, and the fallback preadv reports the short file.
TEST(FileStorage, AMappedImageTruncatedUnderneathFailsWithEio) {
  if (!on_tmpfs("/dev/shm")) GTEST_SKIP() << "/dev/shm is not tmpfs here";
  TempFile file("/dev/shm", 1 << 20);
  AlignedBuffer whole(1 << 20);
  fill_pattern(whole.span(), 14);
  write_file(file.path(), 0, whole.span());
  auto storage = FileStorage::open(file.path(), {});
  auto q = storage->open_queue(2);
  AlignedBuffer buf(8192);
  ASSERT_EQ(read_at(*q, 768 << 10, buf.span()), 8192);
  ASSERT_EQ(as_uring(*q).mapped_transfers(), 1u);
  ASSERT_EQ(::truncate(file.path().c_str(), 512 << 10), 0);
  EXPECT_EQ(read_at(*q, 768 << 10, buf.span()), -EIO);
  EXPECT_EQ(q->in_flight(), 0u);
  EXPECT_EQ(read_at(*q, 256 << 10, buf.span()), 8192);
  EXPECT_EQ(std::memcmp(buf.data(), whole.data() + (256 << 10), buf.size()), 0);
  // A write there lands, as pwritev's always did: the file grows back.
  EXPECT_EQ(write_at(*q, 768 << 10, buf.span()), 8192);
  EXPECT_EQ(stat_of(file.path()).st_size, (768 << 10) + 8192);
  AlignedBuffer back(8192);
  EXPECT_EQ(read_at(*q, 768 << 10, back.span()), 8192);
  EXPECT_EQ(std::memcmp(back.data(), buf.data(), back.size()), 0);
}

}  // namespace
}  // namespace xbb::storage::test
