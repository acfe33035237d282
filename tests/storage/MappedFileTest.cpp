// MappedFile: copies through a tmpfs mapping, the hole bitmap that keeps sparse
// images sparse, and the SIGBUS recovery that turns a file shrunk underneath
// into a failed copy rather than a dead daemon.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include "StorageTestSupport.hpp"
#include "storage/file/MappedFile.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::storage::test {
namespace {

const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));

storage::UniqueFd open_rw(const std::string& path) {
  storage::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  EXPECT_TRUE(fd) << path << ": " << std::strerror(errno);
  return fd;
}

blkcnt_t blocks_of(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_blocks;
}

void write_pattern(int fd, uint64_t offset, uint64_t length, uint64_t seed) {
  AlignedBuffer data(length);
  fill_pattern(data.span(), seed);
  ASSERT_EQ(::pwrite(fd, data.data(), length, static_cast<off_t>(offset)), static_cast<ssize_t>(length));
}

size_t resident_pages() {
  std::ifstream statm("/proc/self/statm");
  size_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident;
}

class MappedFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!on_tmpfs("/dev/shm")) GTEST_SKIP() << "/dev/shm is not tmpfs here";
  }
  // A tmpfs file of `size` bytes, every byte written (pattern `seed`), and its mapping.
  void map_written_file(uint64_t size, uint64_t seed) {
    file_ = std::make_unique<TempFile>("/dev/shm", size);
    fd_ = open_rw(file_->path());
    write_pattern(fd_.get(), 0, size, seed);
    mapped_ = MappedFile::map(fd_.get(), size, "written");
    ASSERT_NE(mapped_, nullptr);
  }

  std::unique_ptr<TempFile> file_;
  storage::UniqueFd fd_;
  std::unique_ptr<MappedFile> mapped_;
};

TEST(MappedFile, OnlyMemoryBackedFilesAreMapped) {
  if (on_tmpfs("/var/tmp")) GTEST_SKIP() << "/var/tmp is tmpfs here: no disk-backed file system to compare";
  TempFile on_disk("/var/tmp", 1 << 20);
  storage::UniqueFd disk_fd = open_rw(on_disk.path());
  EXPECT_EQ(MappedFile::map(disk_fd.get(), 1 << 20, "disk"), nullptr)
      << "a disk-backed file keeps its page cache and writeback: system calls, not a mapping";
  if (!on_tmpfs("/dev/shm")) GTEST_SKIP() << "/dev/shm is not tmpfs here";
  TempFile in_memory("/dev/shm", 1 << 20);
  storage::UniqueFd memory_fd = open_rw(in_memory.path());
  auto mapped = MappedFile::map(memory_fd.get(), 1 << 20, "memory");
  ASSERT_NE(mapped, nullptr);
  EXPECT_EQ(mapped->size(), 1u << 20);
}

TEST_F(MappedFileTest, HolesAreFoundAtMapTimeAndFollowDiscardsAndWrites) {
  const uint64_t size = 256 * kPage;
  TempFile file("/dev/shm", size);
  storage::UniqueFd fd = open_rw(file.path());
  write_pattern(fd.get(), 0, kPage, 1);              // page 0
  write_pattern(fd.get(), 5 * kPage, 3 * kPage, 2);  // pages 5-7
  write_pattern(fd.get(), 200 * kPage, kPage, 3);    // page 200
  const blkcnt_t allocated = blocks_of(fd.get());
  auto mapped = MappedFile::map(fd.get(), size, "holes");
  ASSERT_NE(mapped, nullptr);

  EXPECT_FALSE(mapped->has_hole(0, kPage));
  EXPECT_TRUE(mapped->has_hole(kPage, kPage));
  EXPECT_TRUE(mapped->has_hole(0, 2 * kPage)) << "data then a hole";
  EXPECT_FALSE(mapped->has_hole(5 * kPage, 3 * kPage));
  EXPECT_TRUE(mapped->has_hole(4 * kPage + 4096 - 512, 1024)) << "a hole then data";
  EXPECT_TRUE(mapped->has_hole(5 * kPage, 4 * kPage));
  EXPECT_FALSE(mapped->has_hole(200 * kPage + 512, 1024));
  EXPECT_TRUE(mapped->has_hole(255 * kPage, kPage)) << "the hole at the end of the file";
  EXPECT_TRUE(mapped->has_hole(size - 512, 1024)) << "past the end is never mapped data";
  EXPECT_FALSE(mapped->has_hole(kPage, 0));

  // Across a 64-page bitmap word.
  mapped->mark_data(63 * kPage, 2 * kPage);
  EXPECT_FALSE(mapped->has_hole(63 * kPage, 2 * kPage));
  EXPECT_TRUE(mapped->has_hole(62 * kPage, kPage));
  EXPECT_TRUE(mapped->has_hole(65 * kPage, kPage));

  // A discard frees only the pages it covers entirely; tmpfs zeroes the rest in place.
  mapped->mark_holes(5 * kPage + 512, 2 * kPage);
  EXPECT_FALSE(mapped->has_hole(5 * kPage, kPage));
  EXPECT_TRUE(mapped->has_hole(6 * kPage, kPage));
  EXPECT_FALSE(mapped->has_hole(7 * kPage, kPage));

  // Copies refuse holes, so the caller's preadv reads them as zeros without allocating.
  AlignedBuffer buffer(kPage);
  iovec v = buffer.iov(0, kPage);
  EXPECT_FALSE(mapped->read(kPage, &v, 1, kPage));
  EXPECT_TRUE(mapped->read(200 * kPage, &v, 1, kPage));
  EXPECT_EQ(blocks_of(fd.get()), allocated) << "nothing was allocated through the mapping";
}

// One bit per page of data, not of file size: a sparse terabyte costs nothing
// until it is written, where a plain bitmap would be 32 MiB.
TEST_F(MappedFileTest, ASparseTerabyteCostsNoBitmapMemory) {
  const uint64_t size = uint64_t{1} << 40;
  TempFile file("/dev/shm", 0);
  storage::UniqueFd fd = open_rw(file.path());
  ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  write_pattern(fd.get(), size / 2, kPage, 5);
  const size_t before = resident_pages();
  auto mapped = MappedFile::map(fd.get(), size, "terabyte");
  ASSERT_NE(mapped, nullptr);
  EXPECT_LT(resident_pages() - before, 64u) << "the bitmap must not be resident for the holes";
  EXPECT_FALSE(mapped->has_hole(size / 2, kPage)) << "the one written page was found";
  EXPECT_TRUE(mapped->has_hole(size / 2 + kPage, kPage));
  EXPECT_TRUE(mapped->has_hole(0, kPage));
  AlignedBuffer buffer(kPage);
  iovec v = buffer.iov(0, kPage);
  ASSERT_TRUE(mapped->read(size / 2, &v, 1, kPage));
  AlignedBuffer expected(kPage);
  fill_pattern(expected.span(), 5);
  EXPECT_EQ(std::memcmp(buffer.data(), expected.data(), kPage), 0);
}

TEST_F(MappedFileTest, CopiesMatchTheFileAndFollowItsWrites) {
  const uint64_t size = 1 << 20;
  ASSERT_NO_FATAL_FAILURE(map_written_file(size, 21));

  AlignedBuffer whole(size);
  fill_pattern(whole.span(), 21);
  AlignedBuffer in(3 * 4096);
  iovec split[3] = {in.iov(0, 512), in.iov(512, 7680), in.iov(8192, 4096)};
  ASSERT_TRUE(mapped_->read(64 * 1024 + 512, split, 3, 3 * 4096));
  EXPECT_EQ(std::memcmp(in.data(), whole.data() + 64 * 1024 + 512, in.size()), 0);

  // A write by system call is what the next copy sees: the mapping is the page cache.
  write_pattern(fd_.get(), 128 * 1024, 2 * 4096, 22);
  AlignedBuffer expected(2 * 4096);
  fill_pattern(expected.span(), 22);
  AlignedBuffer back(2 * 4096);
  iovec halves[2] = {back.iov(0, 4096 + 512), back.iov(4096 + 512, 4096 - 512)};
  ASSERT_TRUE(mapped_->read(128 * 1024, halves, 2, 2 * 4096));
  EXPECT_EQ(std::memcmp(back.data(), expected.data(), back.size()), 0);
}

TEST_F(MappedFileTest, AFileTruncatedUnderneathFailsTheCopyAndTheProcessLives) {
#if defined(XBB_TSAN)
  // Under ThreadSanitizer the copy's memcpy is TSan's interceptor, and a
  // fault inside its runtime never reaches xbbd's handler (the process dies
  // of SIGBUS). The gcc and ASan builds check the recovery.
  GTEST_SKIP() << "a SIGBUS inside TSan's memcpy interceptor cannot be recovered from";
#endif
  const uint64_t size = 1 << 20;
  ASSERT_NO_FATAL_FAILURE(map_written_file(size, 31));
  ASSERT_EQ(::ftruncate(fd_.get(), size / 2), 0);

  AlignedBuffer buffer(8192);
  iovec v = buffer.iov(0, 8192);
  EXPECT_FALSE(mapped_->read(size / 2 + 4096, &v, 1, 8192)) << "SIGBUS past the new end is a failed copy";
  EXPECT_FALSE(mapped_->read(size / 2 - 4096, &v, 1, 8192)) << "straddling the new end";
  EXPECT_TRUE(mapped_->read(size / 4, &v, 1, 8192)) << "below the new end the mapping still works";
  // A second fault is caught too: the first did not leave SIGBUS blocked.
  EXPECT_FALSE(mapped_->read(size - 8192, &v, 1, 8192));
}

// The handler must only swallow faults inside a guarded copy.
TEST(MappedFileDeathTest, ASigbusOutsideACopyStillEndsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        const int fd = ::memfd_create("xbb-sigbus", 0);
        if (fd < 0 || ::ftruncate(fd, 2 * static_cast<off_t>(kPage)) != 0) ::_exit(2);
        auto mapped = MappedFile::map(fd, 2 * kPage, "memfd");  // installs the handler
        if (mapped == nullptr) ::_exit(3);
        auto* other = static_cast<volatile char*>(
            ::mmap(nullptr, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
        if (other == MAP_FAILED || ::ftruncate(fd, 0) != 0) ::_exit(4);
        other[kPage] = 1;  // past the end, outside any copy
        ::_exit(0);
      },
#if defined(XBB_SANITIZE)
      // The handler installed before xbbd's (ASan's) gets the fault and reports
      // it, then exits or aborts as ASAN_OPTIONS say (tools/test: abort_on_error).
      [](int status) {
        return (WIFEXITED(status) && WEXITSTATUS(status) == 1) || (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
      },
      "AddressSanitizer: BUS");
#elif defined(XBB_TSAN)
      // The same with TSan's handler, which exits with its exitcode (66).
      [](int status) {
        return (WIFEXITED(status) && WEXITSTATUS(status) == 66) || (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
      },
      "ThreadSanitizer: BUS");
#else
      ::testing::KilledBySignal(SIGBUS), "");
#endif
}

}  // namespace
}  // namespace xbb::storage::test
