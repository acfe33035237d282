// A read-only shared mapping of a memory-backed image file (tmpfs, ramfs),
// through which a queue reads with memcpy instead of one preadv per request.
//
// For such a file the page cache is the storage, so a copy through the mapping
// is the copy the kernel would make inside preadv, without the system call and
// the page-cache lookup around it. Measured for random 4 KiB reads of a 1 GiB
// tmpfs file: ~1.6 µs with preadv, ~0.75 µs with memcpy (most of which is the
// cache misses both pay); in the lab's Xen PV dom0 every system call costs
// ~19 µs.
//
// Writes stay on pwritev. Writing through the mapping was faster on a native
// host (1 MiB sequential writes at 1.30-1.52x fio against 1.05-1.15x), but
// every page's first write is a page fault, which a read's fault-around does
// not amortise: in the lab's PV dom0 under TCG that took 1 MiB writes from
// 1.2-2.0x blkback to 0.69x (roughly 70 µs per page, by the time the job lost). A read-only mapping also
// means a stray pointer in the daemon cannot scribble on a guest's disk.
//
// The mapping is only touched where the file has pages:
// - A read fault on a tmpfs hole allocates a page, so a sparse image would
//   fill with zero pages just by being read. Which pages hold data is
//   therefore kept in a bitmap (one bit per page): found with SEEK_DATA and
//   SEEK_HOLE at map time, added by writes (pwritev allocates), cleared by
//   discards before the hole is punched. A read that touches a page without
//   its bit is left to preadv, which reads holes as zeros without allocating.
//   The bitmap lives in anonymous memory that the kernel supplies on first
//   write, so it costs one bit per 4 KiB of data, not of file size: a sparse
//   2 TiB image costs nothing until it is written.
// - Holes punched by another process are not seen: reading them through the
//   mapping costs a zero page each, nothing worse.
// - Touching a page past the end of a file that another process truncated
//   raises SIGBUS. Copies run under a recovery point, so that SIGBUS makes the
//   copy return false and the caller falls back to preadv, which reports the
//   short file as it always did. A SIGBUS anywhere else goes to the
//   disposition installed before (by default a crash with a core dump, as
//   without xbbd's handler).
//
// Page tables cost 8 bytes per 4 KiB page touched: 0.2 % of the touched part
// of an image that already lives in RAM.
//
// Thread safety: read/has_hole/mark_* may run concurrently from several
// queues' threads (the bitmap words are used as atomics). A stale bit only ever sends
// a copy to the slower system call, or costs a zero page; it never changes
// what a read returns.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>

namespace xbb::storage {

class MappedFile {
 public:
  // nullptr when `fd` is not on tmpfs or ramfs, or cannot be mapped (logged
  // at debug level: the caller then keeps using system calls).
  static std::unique_ptr<MappedFile> map(int fd, uint64_t size, const std::string& name);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  uint64_t size() const { return size_; }
  // Whether [offset, offset + length) touches a page known to be a hole (or
  // lies past the mapping): such a range must be read with preadv.
  bool has_hole(uint64_t offset, uint64_t length) const;
  // Copies the file at `offset` into the iovecs (`bytes` is their sum).
  // false when the range is not entirely mapped data or the copy was
  // interrupted by SIGBUS; nothing is reported, the caller falls back.
  bool read(uint64_t offset, const iovec* iov, unsigned iovcnt, uint64_t bytes) const;
  // Before punching [offset, offset + length): the pages it covers entirely
  // become holes (partly covered ones are only zeroed and keep their page).
  void mark_holes(uint64_t offset, uint64_t length);
  // After a write to [offset, offset + length): every page it touched now
  // exists.
  void mark_data(uint64_t offset, uint64_t length);

 private:
  MappedFile(const char* base, uint64_t size, uint64_t page_size);
  void scan_data(int fd, const std::string& name);
  void set_pages(uint64_t first, uint64_t last, bool data);  // inclusive page range

  const char* base_;
  uint64_t size_;
  unsigned page_shift_;
  uint64_t* data_bits_ = nullptr;  // anonymous mapping; accessed through std::atomic_ref
  uint64_t data_bits_bytes_ = 0;
};

}  // namespace xbb::storage
