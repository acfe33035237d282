#include "storage/file/MappedFile.hpp"

#include <linux/magic.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>

#include <spdlog/spdlog.h>

namespace xbb::storage {
namespace {

// Where a guarded copy resumes after a SIGBUS inside [low, high).
struct RecoveryPoint {
  sigjmp_buf jump;
  const char* low;
  const char* high;
};

// Read by the SIGBUS handler on the faulting thread; initial-exec TLS is a
// plain load there, with no lazy allocation.
__attribute__((tls_model("initial-exec"))) thread_local RecoveryPoint* t_recovery = nullptr;

struct sigaction g_previous_sigbus {};

void on_sigbus(int signo, siginfo_t* info, void* context) {
  RecoveryPoint* point = t_recovery;
  const auto* address = static_cast<const char*>(info->si_addr);
  if (point != nullptr && address >= point->low && address < point->high) siglongjmp(point->jump, 1);
  // Not a guarded copy's fault: whatever handled SIGBUS before us handles it.
  if ((g_previous_sigbus.sa_flags & SA_SIGINFO) != 0 && g_previous_sigbus.sa_sigaction != nullptr) {
    g_previous_sigbus.sa_sigaction(signo, info, context);
    return;
  }
  if ((g_previous_sigbus.sa_flags & SA_SIGINFO) == 0 && g_previous_sigbus.sa_handler != SIG_DFL &&
      g_previous_sigbus.sa_handler != SIG_IGN) {
    g_previous_sigbus.sa_handler(signo);
    return;
  }
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  ::sigaction(SIGBUS, &default_action, nullptr);
  // A fault re-runs the access on return and now ends the process where it
  // happened; a SIGBUS sent with kill() has no access to re-run.
  if (info->si_code <= 0) ::raise(signo);
}

bool install_sigbus_handler() {
  static std::once_flag once;
  static bool installed = false;
  std::call_once(once, [] {
    struct sigaction action {};
    action.sa_sigaction = on_sigbus;
    // SA_NODEFER: siglongjmp(…, 0) does not restore the signal mask, so the
    // handler must not leave SIGBUS blocked behind it.
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    installed = ::sigaction(SIGBUS, &action, &g_previous_sigbus) == 0;
    if (!installed) spdlog::warn("xbbd: cannot install the SIGBUS handler: {}", std::strerror(errno));
  });
  return installed;
}

[[gnu::noinline]] void copy_out(const char* file_at, const iovec* iov, unsigned iovcnt) {
  for (unsigned i = 0; i < iovcnt; ++i) {
    std::memcpy(iov[i].iov_base, file_at, iov[i].iov_len);
    file_at += iov[i].iov_len;
  }
}

// Nothing with a destructor lives in this frame: a SIGBUS leaves the copy
// through siglongjmp.
[[gnu::noinline]] bool guarded_copy_out(const char* file_at, uint64_t bytes, const iovec* iov, unsigned iovcnt) {
  RecoveryPoint point;
  point.low = file_at;
  point.high = file_at + bytes;
  if (sigsetjmp(point.jump, 0) != 0) {
    t_recovery = nullptr;
    return false;
  }
  t_recovery = &point;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  copy_out(file_at, iov, iovcnt);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t_recovery = nullptr;
  return true;
}

// The bits of bitmap word `w` that pages [first, last] cover.
uint64_t word_mask(uint64_t w, uint64_t first, uint64_t last) {
  uint64_t mask = ~uint64_t{0};
  if (w == first / 64) mask &= ~uint64_t{0} << (first % 64);
  if (w == last / 64) mask &= ~uint64_t{0} >> (63 - last % 64);
  return mask;
}

}  // namespace

std::unique_ptr<MappedFile> MappedFile::map(int fd, uint64_t size, const std::string& name) {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0 || (fs.f_type != TMPFS_MAGIC && fs.f_type != RAMFS_MAGIC)) return nullptr;
  if (size == 0 || size > std::numeric_limits<size_t>::max()) return nullptr;
  const long page = ::sysconf(_SC_PAGESIZE);
  if (page <= 0 || !std::has_single_bit(static_cast<unsigned long>(page))) return nullptr;
  if (!install_sigbus_handler()) return nullptr;
  void* base = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    spdlog::debug("{}: cannot map the memory-backed file ({}); using system calls", name, std::strerror(errno));
    return nullptr;
  }
  // A core dump must not carry the guest's disk, nor a forked child the mapping.
  ::madvise(base, size, MADV_DONTDUMP);
  ::madvise(base, size, MADV_DONTFORK);
  std::unique_ptr<MappedFile> mapped(
      new MappedFile(static_cast<const char*>(base), size, static_cast<uint64_t>(page)));
  if (mapped->data_bits_ == nullptr) {
    spdlog::debug("{}: cannot allocate the page bitmap; using system calls", name);
    return nullptr;
  }
  mapped->scan_data(fd, name);
  spdlog::debug("{}: memory-backed file mapped ({} bytes); reads are a memcpy where it has pages", name, size);
  return mapped;
}

MappedFile::MappedFile(const char* base, uint64_t size, uint64_t page_size)
    : base_(base), size_(size), page_shift_(static_cast<unsigned>(std::countr_zero(page_size))) {
  const uint64_t words = (((size + page_size - 1) >> page_shift_) + 63) / 64;
  data_bits_bytes_ = words * sizeof(uint64_t);
  // Zero-filled on demand: a page of bits exists once a bit in it is set.
  void* bits = ::mmap(nullptr, data_bits_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0);
  if (bits != MAP_FAILED) data_bits_ = static_cast<uint64_t*>(bits);
}

MappedFile::~MappedFile() {
  if (data_bits_ != nullptr) ::munmap(data_bits_, data_bits_bytes_);
  ::munmap(const_cast<char*>(base_), size_);
}

// tmpfs extents are whole pages (a partial page exists only at end-of-file),
// so every page overlapping a data extent holds data. Without SEEK_DATA the
// file is left without data bits: slower (every read uses preadv), never wrong.
void MappedFile::scan_data(int fd, const std::string& name) {
  const auto end = static_cast<off_t>(size_);
  off_t pos = 0;
  while (pos < end) {
    const off_t data = ::lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno != ENXIO)
        spdlog::warn("{}: SEEK_DATA failed ({}); reading the file with preadv", name, std::strerror(errno));
      return;
    }
    if (data >= end) return;
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0 || hole <= data) return;  // SEEK_HOLE finds end-of-file at worst
    hole = std::min(hole, end);
    set_pages(static_cast<uint64_t>(data) >> page_shift_, (static_cast<uint64_t>(hole) - 1) >> page_shift_, true);
    pos = hole;
  }
}

void MappedFile::set_pages(uint64_t first, uint64_t last, bool data) {
  for (uint64_t w = first / 64; w <= last / 64; ++w) {
    const uint64_t mask = word_mask(w, first, last);
    std::atomic_ref<uint64_t> word(data_bits_[w]);
    // Skip words already right: a bitmap page is only touched when it changes.
    if (data ? (word.load(std::memory_order_relaxed) & mask) == mask
             : (word.load(std::memory_order_relaxed) & mask) == 0)
      continue;
    if (data)
      word.fetch_or(mask, std::memory_order_relaxed);
    else
      word.fetch_and(~mask, std::memory_order_relaxed);
  }
}

bool MappedFile::has_hole(uint64_t offset, uint64_t length) const {
  if (length == 0) return false;
  if (offset > size_ || length > size_ - offset) return true;
  const uint64_t first = offset >> page_shift_;
  const uint64_t last = (offset + length - 1) >> page_shift_;
  for (uint64_t w = first / 64; w <= last / 64; ++w) {
    const uint64_t mask = word_mask(w, first, last);
    if ((std::atomic_ref<uint64_t>(data_bits_[w]).load(std::memory_order_relaxed) & mask) != mask) return true;
  }
  return false;
}

void MappedFile::mark_holes(uint64_t offset, uint64_t length) {
  if (offset >= size_ || length == 0) return;
  const uint64_t end = length > size_ - offset ? size_ : offset + length;
  const uint64_t page = uint64_t{1} << page_shift_;
  const uint64_t first = (offset + page - 1) >> page_shift_;
  const uint64_t end_page = end >> page_shift_;  // tmpfs keeps (and zeroes) a partly punched page
  if (end_page > first) set_pages(first, end_page - 1, false);
}

void MappedFile::mark_data(uint64_t offset, uint64_t length) {
  if (offset >= size_ || length == 0) return;
  const uint64_t end = length > size_ - offset ? size_ : offset + length;
  set_pages(offset >> page_shift_, (end - 1) >> page_shift_, true);
}

bool MappedFile::read(uint64_t offset, const iovec* iov, unsigned iovcnt, uint64_t bytes) const {
  if (has_hole(offset, bytes)) return false;
  return guarded_copy_out(base_ + offset, bytes, iov, iovcnt);
}

}  // namespace xbb::storage
