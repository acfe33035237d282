// The StorageQueue for file and block-device storage: one io_uring per queue,
// owned by the queue's worker thread.
//
// - The storage's fd is registered (IOSQE_FIXED_FILE), saving an fget/fput per
//   I/O; the queue's eventfd is registered with io_uring_register_eventfd and is
//   completion_fd().
// - Read/Write are IORING_OP_READV/WRITEV on the caller's iovecs; a short
//   transfer is resubmitted for the remainder and reported only once complete
//   (a transfer that makes no progress fails with -EIO, never partial success).
// - Flush is IORING_OP_FSYNC with IORING_FSYNC_DATASYNC (fdatasync).
// - Discard is IORING_OP_FALLOCATE(PUNCH_HOLE|KEEP_SIZE) for files, or the
//   BLKDISCARD/BLKSECDISCARD ioctl on a helper thread for block devices (see
//   BlockDiscardThread.hpp).
// - Memory-backed files (tmpfs, ramfs) whose file system cannot do
//   non-blocking I/O (RWF_NOWAIT is refused, as tmpfs refuses it up to at
//   least Linux 6.18) are read and written inline, with preadv/pwritev inside
//   submit(), like RamStorage. io_uring would send every such request to an
//   io-wq kernel thread (it cannot try it inline without FMODE_NOWAIT), and
//   that hand-off costs more than the copy; the copy itself never waits for
//   a device. Completions still wait for reap(), signalled through
//   completion_fd() as usual. Flush and discard keep using io_uring.
//   A file the Storage mapped (MappedFile) always runs inline, whatever its
//   RWF_NOWAIT answer: a read is a memcpy from the mapping wherever the file
//   has pages, and preadv otherwise; a write is pwritev and then tells the
//   mapping which pages now exist; a discard marks its pages as holes before
//   it is issued.
// IORING_SETUP_SINGLE_ISSUER is deliberately not used: it binds the ring to the
// thread that creates it, and queues are often opened on the control thread and
// then handed to their worker.
#pragma once

#include <liburing.h>

#include <memory>
#include <string>
#include <vector>

#include "storage/file/BlockDiscardThread.hpp"
#include "storage/CompletionSignal.hpp"
#include "storage/file/MappedFile.hpp"
#include "storage/Storage.hpp"

namespace xbb::storage {

enum class DiscardMethod : uint8_t { None, PunchHole, BlockIoctl };

struct UringQueueConfig {
  int fd = -1;                  // owned by the Storage, which outlives its queues
  Properties properties;        // what submit() validates against
  uint32_t buffer_alignment = 0;  // non-zero for O_DIRECT: iovecs must be aligned
  DiscardMethod discard = DiscardMethod::None;
  std::string name;             // for logs
  // A memory-backed file's mapping (owned by the Storage): inline reads copy
  // from it where the file has pages (see MappedFile.hpp).
  MappedFile* mapped = nullptr;
};

class UringQueue final : public StorageQueue {
 public:
  static constexpr unsigned kMaxDepth = 4096;

  // Throws StorageError if io_uring is unavailable or depth is not 1..kMaxDepth.
  UringQueue(UringQueueConfig config, unsigned depth);
  // Waits for every in-flight request: the kernel may still be writing into
  // the caller's buffers, which must not be freed before that.
  ~UringQueue() override;
  UringQueue(const UringQueue&) = delete;
  UringQueue& operator=(const UringQueue&) = delete;

  int submit(const IoRequest& request) override;
  void flush_submissions() override;
  int completion_fd() const override { return signal_.fd(); }
  size_t reap(std::span<IoCompletion> out) override;
  bool has_completions() const override;
  unsigned capacity() const override { return depth_; }
  unsigned in_flight() const override { return in_flight_; }
  // Whether Read/Write run inline (see above); decided at construction.
  bool inline_io() const { return inline_io_; }
  // Inline reads that went through the mapping rather than preadv.
  uint64_t mapped_transfers() const { return mapped_transfers_; }

 private:
  struct Slot {
    uint64_t tag = 0;
    IoOp op = IoOp::Read;
    uint64_t offset = 0;
    uint64_t bytes = 0;       // total to move (Read/Write)
    uint64_t done = 0;        // moved so far
    const iovec* iov = nullptr;
    unsigned iovcnt = 0;
    unsigned retries = 0;
    bool via_thread = false;  // a discard running on the BlockDiscardThread
    std::vector<iovec> remainder;  // only used after a short transfer
  };

  io_uring_sqe* next_sqe();
  bool prepare(uint32_t index);   // false: no SQE available
  bool prepare_remainder(uint32_t index);  // false: no SQE available
  // Handles one CQE; returns true and fills `out` if the request finished.
  bool on_cqe(uint32_t index, int res, IoCompletion& out);
  IoCompletion finish(uint32_t index, int32_t result);
  BlockDiscardThread& discard_thread();
  int32_t transfer_inline(const IoRequest& request, uint64_t bytes);
  int32_t transfer_with_syscalls(const IoRequest& request, uint64_t bytes);

  UringQueueConfig config_;
  unsigned depth_;
  io_uring ring_{};
  CompletionSignal signal_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  unsigned in_flight_ = 0;
  unsigned ring_ops_ = 0;  // in-flight requests that live in the io_uring
  bool resubmit_pending_ = false;
  bool submit_failed_ = false;
  bool inline_io_ = false;
  uint64_t mapped_transfers_ = 0;
  std::vector<IoCompletion> inline_done_;  // [inline_head_, end) await reap()
  size_t inline_head_ = 0;
  bool inline_signalled_ = false;           // one eventfd write per reap cycle
  std::vector<BlockDiscardThread::Done> discard_done_;
  size_t discard_done_head_ = 0;
  std::unique_ptr<BlockDiscardThread> discard_thread_;  // declared last: joined first
};

}  // namespace xbb::storage
