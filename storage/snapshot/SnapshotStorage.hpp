// A read-only Storage presenting one snapshot as it was when taken, so the
// daemon can serve it to another guest (or back it up).
//
// Reads are served by the origin's copy-on-write thread (CowOriginCopier.hpp):
// copied clusters come from the store, the rest from the origin, and because
// copies and reads run on that one thread a read can never see data written to
// the origin after the snapshot. Writes and discards fail with -EROFS; flush
// succeeds (there is nothing to flush). Reads of an invalid or deleted snapshot
// fail with -EIO (logged once).
//
// Target syntax (registered as the "snapshot" kind by SnapshotTarget.hpp):
//   snapshot:ORIGIN:STORE
// ORIGIN is the name under which the daemon registered a disk it serves in
// the OriginRegistry (e.g. "3/xvda": domain 3's xvda); STORE is the snapshot's
// store file. Only the first ':' after ORIGIN separates, so STORE may contain
// ':'. The store is attached to the origin if it is not active yet.
#pragma once

#include <memory>
#include <string>

#include "storage/snapshot/CowOriginStorage.hpp"
#include "storage/snapshot/Snapshot.hpp"
#include "storage/Storage.hpp"

namespace xbb::storage {

class SnapshotStorage final : public Storage {
 public:
  // Throws StorageError if `snapshot` is not an active snapshot of `origin`.
  SnapshotStorage(std::shared_ptr<CowOriginStorage> origin, std::shared_ptr<Snapshot> snapshot);

  const Properties& properties() const override { return properties_; }
  std::string describe() const override;
  std::unique_ptr<StorageQueue> open_queue(unsigned depth) override;

  const std::shared_ptr<Snapshot>& snapshot() const { return snapshot_; }

 private:
  std::shared_ptr<CowOriginStorage> origin_;
  std::shared_ptr<Snapshot> snapshot_;
  Properties properties_;
};

}  // namespace xbb::storage
