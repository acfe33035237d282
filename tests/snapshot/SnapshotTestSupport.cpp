#include "tests/snapshot/SnapshotTestSupport.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <gtest/gtest.h>

namespace xbb::storage::snapshot_test {

TempDir::TempDir() {
  std::string tmpl = "/tmp/xbb-snapshot-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  path_ = tmpl;
}

TempDir::~TempDir() {
  if (DIR* dir = ::opendir(path_.c_str())) {
    while (dirent* entry = ::readdir(dir)) {
      const std::string name = entry->d_name;
      if (name != "." && name != "..") ::unlink((path_ + "/" + name).c_str());
    }
    ::closedir(dir);
  }
  ::rmdir(path_.c_str());
}

void make_file(const std::string& path, uint64_t size) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + path);
  const int rc = ::ftruncate(fd, static_cast<off_t>(size));
  ::close(fd);
  if (rc != 0) throw std::runtime_error("cannot size " + path);
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

Buffer::Buffer(size_t size) : size_(size) {
  void* p = std::aligned_alloc(4096, (std::max<size_t>(size, 1) + 4095) / 4096 * 4096);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, size);
  data_.reset(static_cast<uint8_t*>(p));
}

void Buffer::Free::operator()(uint8_t* p) const { std::free(p); }

namespace {
uint64_t word(uint64_t id, uint64_t offset, uint64_t i) {
  uint64_t x = id * 0x9E3779B97F4A7C15ull ^ (offset + i) * 0xBF58476D1CE4E5B9ull;
  return x ^ (x >> 29);
}
}  // namespace

void fill_sectors(std::span<uint8_t> out, uint64_t offset, uint64_t id) {
  for (size_t s = 0; s + kSector <= out.size(); s += kSector) {
    uint8_t* sector = out.data() + s;
    if (id == 0) {
      std::memset(sector, 0, kSector);
      continue;
    }
    const uint64_t at = offset + s;
    std::memcpy(sector, &id, 8);
    std::memcpy(sector + 8, &at, 8);
    for (uint64_t i = 2; i < kSector / 8; ++i) {
      const uint64_t w = word(id, at, i);
      std::memcpy(sector + i * 8, &w, 8);
    }
  }
}

uint64_t sector_id(std::span<const uint8_t> sector, uint64_t offset) {
  uint64_t id;
  std::memcpy(&id, sector.data(), 8);
  uint8_t expected[kSector];
  fill_sectors(expected, offset, id);
  return std::memcmp(expected, sector.data(), kSector) == 0 ? id : kCorrupt;
}

int32_t run_one(StorageQueue& queue, const IoRequest& request) {
  const int rc = queue.submit(request);
  if (rc != 0) return rc;
  queue.flush_submissions();
  for (int rounds = 0; rounds < 60'000; ++rounds) {  // a hang guard, not a timing check
    IoCompletion done[4];
    const size_t n = queue.reap(done);
    for (size_t i = 0; i < n; ++i)
      if (done[i].tag == request.tag) return done[i].result;
    if (n == 0) {
      pollfd p{queue.completion_fd(), POLLIN, 0};
      ::poll(&p, 1, 10);
    }
  }
  ADD_FAILURE() << "request never completed";
  return -ETIMEDOUT;
}

int32_t read_at(StorageQueue& queue, uint64_t offset, std::span<uint8_t> into) {
  iovec v{into.data(), into.size()};
  IoRequest r;
  r.op = IoOp::Read;
  r.offset = offset;
  r.iov = &v;
  r.iovcnt = 1;
  r.tag = 0x5eed;
  return run_one(queue, r);
}

int32_t write_at(StorageQueue& queue, uint64_t offset, std::span<const uint8_t> from) {
  iovec v{const_cast<uint8_t*>(from.data()), from.size()};
  IoRequest r;
  r.op = IoOp::Write;
  r.offset = offset;
  r.iov = &v;
  r.iovcnt = 1;
  r.tag = 0xabcd;
  return run_one(queue, r);
}

int32_t discard_at(StorageQueue& queue, uint64_t offset, uint64_t length) {
  IoRequest r;
  r.op = IoOp::Discard;
  r.offset = offset;
  r.length = length;
  r.tag = 0xd15c;
  return run_one(queue, r);
}

std::vector<uint64_t> read_ids(StorageQueue& queue, uint64_t size) {
  Buffer buffer(size);
  const int32_t rc = read_at(queue, 0, buffer.span());
  EXPECT_EQ(rc, static_cast<int32_t>(size));
  std::vector<uint64_t> ids(size / kSector);
  for (uint64_t s = 0; s < ids.size(); ++s) ids[s] = sector_id({buffer.data() + s * kSector, kSector}, s * kSector);
  return ids;
}

}  // namespace xbb::storage::snapshot_test
