// The Storage port: what the engine needs from any backing store.
//
// A Storage is shared by every queue of one disk; I/O goes through a
// StorageQueue, which is owned by exactly one worker thread (like an SPDK io
// channel or a ublksrv per-queue io_uring). Submissions are batched: submit()
// only queues, flush_submissions() hands the batch to the kernel in one call.
// Completions are reaped on the owning thread when completion_fd() is readable.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>

namespace xbb::storage {

struct Properties {
  uint64_t size_bytes = 0;
  uint32_t logical_block_size = 512;   // smallest addressable unit, power of two >= 512
  uint32_t physical_block_size = 512;  // preferred I/O unit
  bool read_only = false;
  bool can_flush = false;               // flush is meaningful (volatile cache or page cache)
  bool can_discard = false;
  bool can_secure_discard = false;
  uint32_t discard_granularity = 0;     // bytes; 0 when !can_discard
  uint32_t discard_alignment = 0;       // bytes
};

enum class IoOp : uint8_t { Read, Write, Flush, Discard, SecureDiscard };

struct IoRequest {
  IoOp op = IoOp::Read;
  uint64_t offset = 0;           // bytes; Read/Write/Discard
  uint64_t length = 0;           // bytes; Discard (Read/Write: the sum of iov)
  const iovec* iov = nullptr;    // Read/Write scatter-gather; must stay valid until completion
  unsigned iovcnt = 0;
  uint64_t tag = 0;              // echoed in the completion
};

struct IoCompletion {
  uint64_t tag = 0;
  int32_t result = 0;  // >= 0 success (bytes moved for Read/Write), < 0 is -errno
};

class StorageQueue {
 public:
  virtual ~StorageQueue() = default;
  // Queues one request. Returns 0, or -EAGAIN when `capacity()` requests are
  // already in flight (reap, then retry), or another -errno for a request that
  // can never succeed (it is then not queued and gets no completion).
  virtual int submit(const IoRequest& request) = 0;
  // Hands everything queued since the last call to the storage.
  virtual void flush_submissions() = 0;
  // Readable (poll/epoll) when reap() has something to return.
  virtual int completion_fd() const = 0;
  // Non-blocking: moves finished requests into `out`, returns how many.
  virtual size_t reap(std::span<IoCompletion> out) = 0;
  // For callers that poll before sleeping: true when reap() has something to
  // return now. Cheap (no system call, no lock). A queue that cannot tell
  // cheaply says false; completion_fd() stays the authority either way.
  virtual bool has_completions() const { return false; }
  virtual unsigned capacity() const = 0;
  virtual unsigned in_flight() const = 0;
};

// Ownership of a backing store by this process (see Storage::claim). Released
// when destroyed, and by the kernel when the process dies.
class StorageClaim {
 public:
  virtual ~StorageClaim() = default;
};

class Storage {
 public:
  virtual ~Storage() = default;
  virtual const Properties& properties() const = 0;
  // Human-readable identity for logs and `xbbctl`, e.g. "file:/var/lib/xen/a.img".
  virtual std::string describe() const = 0;
  // Thread-safe. `depth` is the most requests the queue will hold in flight.
  virtual std::unique_ptr<StorageQueue> open_queue(unsigned depth) = 0;
  // Claims the backing store for this process, so that another xbbd, QEMU or a
  // mount cannot use it at the same time: exclusively when `writable`, shared
  // with other readers otherwise (what Xen's `block` script and QEMU's image
  // locking enforce). Throws StorageInUse when another owner holds it, and
  // StorageError when the claim cannot be made. Returns nullptr for storage
  // that has nothing to claim here (RAM, a network server's export).
  //
  // The claim is an object of its own: it holds a descriptor that no I/O ever
  // uses, so it is released the moment the process exits (a descriptor
  // registered with io_uring can stay referenced by the ring's teardown for a
  // while after a crash, which would keep the lock from the next xbbd), and it
  // may outlive this Storage (reopening the same target keeps it).
  virtual std::unique_ptr<StorageClaim> claim(bool writable) const {
    (void)writable;
    return nullptr;
  }
  // The backing store's size now, which may have grown since open (the size
  // watcher compares it with properties().size_bytes, which stays what it
  // was at open). Thread-safe; may block (a hung NFS mount). Nothing when the
  // kind cannot tell cheaply or its size cannot change underneath.
  virtual std::optional<uint64_t> current_size() const { return std::nullopt; }
  // Whether another open of the same describe() reaches the same data (a
  // file, a device, an NBD export), so that everything keyed by the image
  // (one copy-on-write origin per image, say) may be shared between them.
  // RAM is the exception: every open is a store of its own.
  virtual bool same_data_for_every_open() const { return true; }
};

// Every failure to open or configure a storage is reported with this, with a
// message an administrator can act on ("ram: size '12Q' is not a size").
class StorageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Storage::claim found another owner: the message names the target and says
// what may hold it.
class StorageInUse : public StorageError {
 public:
  using StorageError::StorageError;
};

}  // namespace xbb::storage
