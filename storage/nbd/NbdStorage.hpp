// A disk served by a remote NBD server through libnbd (target `nbd:URI`; the
// syntax and the reconnect/timeout settings are in NbdTarget.hpp).
//
// - Properties come from the server at open (NbdHandle.hpp): size, block
//   sizes, read-only, flush, trim. open() connects once, within the request
//   timeout, and fails with a StorageError saying why (bad URI, refused,
//   unreachable, unusable export).
// - Connections: when the server advertises multi-conn, each queue gets its
//   own connection (and I/O thread), so queues never contend. Without it the
//   NBD spec promises nothing across connections: a flush on one need not
//   cover writes acknowledged on another, nor need a read on one see them, and
//   the guest's flush must cover writes from every queue. So then all queues
//   share one connection driven by one I/O thread; `#multi-conn=off` forces
//   that too.
// - I/O: many requests in flight per connection through nbd_aio_pread/pwrite/
//   flush/trim; a single-buffer request is zero-copy, scatter-gather goes
//   through a bounce buffer; requests above the server's maximum block size
//   (or 32 MiB) are split into several commands answered as one.
// - Flush without server support completes at once (nothing to flush).
// - Failures: see NbdConnection.hpp. In short: in-flight requests fail (-EIO or
//   the server's errno) when the connection dies, -ETIMEDOUT past the timeout,
//   -ENOTCONN while disconnected; service resumes after a reconnect.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "storage/nbd/NbdConnection.hpp"
#include "storage/nbd/NbdHandle.hpp"
#include "storage/nbd/NbdTarget.hpp"
#include "storage/OpenOptions.hpp"
#include "storage/Storage.hpp"

namespace xbb::storage {

class NbdStorage final : public Storage {
 public:
  // `argument` is the text after "nbd:". Throws StorageError.
  static std::unique_ptr<NbdStorage> open(const std::string& argument, const OpenOptions& options);

  const Properties& properties() const override { return shape_.properties; }
  std::string describe() const override { return target_.to_string(); }
  std::unique_ptr<StorageQueue> open_queue(unsigned depth) override;

  const NbdTarget& target() const { return target_; }
  // Whether each queue gets its own connection (server multi-conn and not
  // disabled by `#multi-conn=off`).
  bool connection_per_queue() const { return per_queue_; }

 private:
  NbdStorage(NbdTarget target, NbdServerShape shape, NbdHandle connected);

  const NbdTarget target_;
  const NbdServerShape shape_;
  const bool per_queue_;
  std::mutex mutex_;
  NbdHandle spare_;                          // the probe connection, given to the first queue
  std::shared_ptr<NbdConnection> shared_;    // when !per_queue_
};

}  // namespace xbb::storage
