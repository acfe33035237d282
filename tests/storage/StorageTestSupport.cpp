#include "StorageTestSupport.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <gtest/gtest.h>

namespace xbb::storage::test {

AlignedBuffer::AlignedBuffer(size_t bytes) : size_(bytes) {
  void* p = nullptr;
  if (::posix_memalign(&p, 4096, bytes == 0 ? 4096 : bytes) != 0) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  data_.reset(static_cast<unsigned char*>(p));
}

void AlignedBuffer::Free::operator()(unsigned char* p) const { std::free(p); }

void fill_pattern(std::span<unsigned char> out, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (i % 8 == 0) {  // splitmix64 step per 8 bytes
      x += 0x9E3779B97F4A7C15ull;
    }
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    out[i] = static_cast<unsigned char>(z >> ((i % 8) * 8));
  }
  // A pattern must never be mistaken for a hole.
  if (!out.empty()) out[0] |= 1;
}

bool all_zero(std::span<const unsigned char> bytes) {
  for (unsigned char b : bytes)
    if (b != 0) return false;
  return true;
}

bool on_tmpfs(const std::string& directory) {
  struct statfs fs {};
  return ::statfs(directory.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC;
}

TempFile::TempFile(const std::string& directory, uint64_t size, const std::string& name_hint) {
  std::string tmpl = directory + "/xbb-storage-" + name_hint + "-XXXXXX";
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0) throw std::runtime_error("mkstemp in " + directory + ": " + std::strerror(errno));
  path_ = tmpl;
  const int rc = ::ftruncate(fd, static_cast<off_t>(size));
  ::close(fd);
  if (rc != 0) throw std::runtime_error("ftruncate " + path_ + ": " + std::strerror(errno));
}

TempFile::~TempFile() { ::unlink(path_.c_str()); }

TempDir::TempDir() {
  std::string tmpl = "/tmp/xbb-storage-dir-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  path_ = tmpl;
}

TempDir::~TempDir() {
  if (DIR* dir = ::opendir(path_.c_str())) {
    while (dirent* entry = ::readdir(dir)) {
      const std::string name = entry->d_name;
      if (name == "." || name == "..") continue;
      const std::string child = path_ + "/" + name;
      if (::unlink(child.c_str()) != 0) ::rmdir(child.c_str());
    }
    ::closedir(dir);
  }
  ::rmdir(path_.c_str());
}

std::unique_ptr<LoopDevice> LoopDevice::attach(const std::string& file, bool read_only, std::string& why_not) {
  if (::geteuid() != 0) {
    why_not = "loop devices need root (run the tests as root to cover DeviceStorage)";
    return nullptr;
  }
  if (::access("/dev/loop-control", R_OK | W_OK) != 0) {
    why_not = "no /dev/loop-control (loop module not loaded, or a container without it)";
    return nullptr;
  }
  const std::string command =
      std::string("losetup ") + (read_only ? "-r " : "") + "-f --show '" + file + "' 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    why_not = "cannot run losetup";
    return nullptr;
  }
  std::array<char, 512> line{};
  std::string output;
  while (std::fgets(line.data(), line.size(), pipe) != nullptr) output += line.data();
  const int status = ::pclose(pipe);
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  if (status != 0 || !output.starts_with("/dev/")) {
    why_not = "losetup failed: " + output;
    return nullptr;
  }
  return std::unique_ptr<LoopDevice>(new LoopDevice(output));
}

LoopDevice::~LoopDevice() {
  const std::string command = "losetup -d " + path_ + " 2>&1";
  if (std::system(command.c_str()) != 0) ADD_FAILURE() << "could not detach " << path_;
}

std::vector<IoCompletion> wait_for(StorageQueue& queue, size_t count) {
  std::vector<IoCompletion> done;
  std::array<IoCompletion, 64> batch{};
  // Hang guard only (a lost wakeup would otherwise block the suite forever).
  constexpr int kHangGuardMs = 60'000;
  while (done.size() < count) {
    pollfd pfd{queue.completion_fd(), POLLIN, 0};
    const int rc = ::poll(&pfd, 1, kHangGuardMs);
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) {
      ADD_FAILURE() << "completion_fd never became readable: " << done.size() << " of " << count
                    << " completions (lost wakeup?)";
      return done;
    }
    const size_t n = queue.reap(batch);
    done.insert(done.end(), batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(n));
  }
  return done;
}

IoCompletion run_one(StorageQueue& queue, const IoRequest& request) {
  const int rc = queue.submit(request);
  if (rc != 0) return {request.tag, rc};
  queue.flush_submissions();
  auto done = wait_for(queue, 1);
  if (done.size() != 1) return {request.tag, -ETIME};
  EXPECT_EQ(done[0].tag, request.tag);
  return done[0];
}

int32_t read_at(StorageQueue& queue, uint64_t offset, std::span<unsigned char> into) {
  iovec v{into.data(), into.size()};
  return run_one(queue, {IoOp::Read, offset, 0, &v, 1, 101}).result;
}

int32_t write_at(StorageQueue& queue, uint64_t offset, std::span<const unsigned char> from) {
  iovec v{const_cast<unsigned char*>(from.data()), from.size()};
  return run_one(queue, {IoOp::Write, offset, 0, &v, 1, 102}).result;
}

int32_t discard_at(StorageQueue& queue, uint64_t offset, uint64_t length) {
  return run_one(queue, {IoOp::Discard, offset, length, nullptr, 0, 103}).result;
}

int32_t flush(StorageQueue& queue) { return run_one(queue, {IoOp::Flush, 0, 0, nullptr, 0, 104}).result; }

}  // namespace xbb::storage::test
