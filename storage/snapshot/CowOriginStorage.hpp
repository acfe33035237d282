// The copy-on-write origin: a decorator the daemon puts around every disk it
// serves, so that point-in-time snapshots of that disk can be taken while the
// guest runs (NetBSD fss(4), in user space, with a persistent backing store).
//
// Cost without snapshots: reads pass straight through; a write or discard
// costs one atomic load of the origin's state word plus two plain stores to
// the queue's own "busy / writes in flight" word and a compiler barrier (see
// CowOriginFence.hpp), besides the slot bookkeeping every decorator queue has.
//
// With snapshots, before a write or discard reaches the origin, each cluster it
// touches that is not yet copied into every valid snapshot is copied there by
// the origin's copy-on-write thread (CowOriginCopier.hpp explains why a thread,
// and the ordering rules). The worker only hands the write over and issues it
// when the copier posts it back; its completion is delivered after the copy
// and the write both finished. A store error invalidates the snapshot, never
// the origin write.
//
// Creating a snapshot needs a quiesce point: no write may be between "checked
// the snapshot list" and "completed" while a snapshot is installed. The
// protocol, which costs the workers nothing until it runs:
//   1. The control thread sets the hold bit in the state word (with a new
//      generation), runs the heavy side of an asymmetric fence (membarrier),
//      and wakes every queue (their completion fds).
//   2. A queue that is idle -- no writes in flight and not inside submit() or
//      reap() -- counts as quiesced at once: the fence guarantees it will see
//      the hold before it routes another write. A busy queue, on its own
//      thread, sees the hold in submit() or reap(); from then on it holds new
//      writes and discards (accepted, not failed), and once its writes in
//      flight (issued or copying) are done it acknowledges the generation.
//   3. When every queue is quiesced, the snapshot is installed in a new list
//      and the state word gets a new generation without the hold bit. If the
//      queues are not all quiesced within the quiesce timeout (10 s), the hold
//      is lifted and creation fails with a clear error.
//   4. Each queue, seeing the new generation, takes the new list (under the
//      origin's lock, once per change) and releases its held writes through it.
// A queue with writes in flight must be reaped (as the engine's workers do
// whenever its completion fd is readable) for creation to complete.
//
// Deleting needs no quiesce: the snapshot is marked inactive and a new list is
// published; writes racing the deletion may still copy into it, which is
// harmless, and reads of a deleted snapshot fail.
//
// Persistence: a snapshot's store is self-describing (SnapshotStore.hpp) and
// survives a restart. After a restart, attach_snapshot() makes it active
// again, but only if nothing has been written through this CowOriginStorage
// yet: a write that was not copied would make the snapshot silently wrong, so
// such a late attach marks the store invalid and fails. The daemon therefore
// attaches the snapshots it knows before it serves the origin.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "storage/snapshot/CowOriginCopier.hpp"
#include "storage/snapshot/Snapshot.hpp"
#include "storage/Storage.hpp"

namespace xbb::storage {

class CowOriginQueue;

class CowOriginStorage final : public Storage, public std::enable_shared_from_this<CowOriginStorage> {
 public:
  static constexpr uint32_t kDefaultClusterSize = 64 * 1024;
  static constexpr std::chrono::milliseconds kDefaultQuiesceTimeout{10'000};

  // Throws StorageError for a null inner storage.
  static std::shared_ptr<CowOriginStorage> create(std::unique_ptr<Storage> inner);
  ~CowOriginStorage() override;
  CowOriginStorage(const CowOriginStorage&) = delete;
  CowOriginStorage& operator=(const CowOriginStorage&) = delete;

  const Properties& properties() const override { return inner_->properties(); }
  // The inner storage's identity, unchanged: it is what snapshot stores record.
  std::string describe() const override { return inner_->describe(); }
  bool same_data_for_every_open() const override { return inner_->same_data_for_every_open(); }
  std::optional<uint64_t> current_size() const override { return inner_->current_size(); }
  std::unique_ptr<StorageQueue> open_queue(unsigned depth) override;

  // Any thread. Creates the store file `store_path` (must not exist; cluster
  // size a power of two in [4096, 64 MiB]) and makes it an active snapshot of
  // the origin as of a quiesce point. Throws StorageError (store not created,
  // or writes did not drain within the quiesce timeout; the file is removed).
  std::shared_ptr<Snapshot> create_snapshot(const std::string& store_path,
                                            uint32_t cluster_size = kDefaultClusterSize);
  // Any thread. Re-activates an existing store of this origin (after a
  // restart). Returns the active snapshot if it is already attached. Throws
  // StorageError for a store of another origin, a corrupt or invalid store,
  // or an origin already written since it was opened (see above).
  std::shared_ptr<Snapshot> attach_snapshot(const std::string& store_path);
  // Any thread. Removes the snapshot named by its id or store path; with
  // `delete_store`, also unlinks the store file, otherwise marks the kept
  // store invalid (it stops receiving copies, so it could never be trusted
  // again). Returns false if unknown.
  bool delete_snapshot(const std::string& id_or_path, bool delete_store = false);

  std::vector<std::shared_ptr<Snapshot>> snapshots() const;
  std::shared_ptr<Snapshot> find_snapshot(const std::string& id_or_path) const;  // null if unknown

  void set_quiesce_timeout(std::chrono::milliseconds timeout);
  Storage& inner() { return *inner_; }

  // For SnapshotStorage: serves snapshot reads. Exists once a snapshot does.
  CowOriginCopier& copier() { return *copier_; }

 private:
  friend class CowOriginQueue;
  explicit CowOriginStorage(std::unique_ptr<Storage> inner);

  // Runs `install` (under mutex_) at a quiesce point; it returns "" or why it
  // refused. Throws StorageError on a timeout or a refusal.
  void quiesced(const std::string& what, const std::function<std::string()>& install);
  void ensure_copier();  // control_mutex_ held
  std::shared_ptr<Snapshot> find_locked(const std::string& id_or_path) const;  // mutex_ held

  // For queues.
  void register_queue(CowOriginQueue* queue);
  void unregister_queue(CowOriginQueue* queue);
  std::shared_ptr<const SnapshotList> current_list() const;
  void notify_ack();

  std::unique_ptr<Storage> inner_;
  std::atomic<uint64_t> state_{0};      // (generation << 1) | hold
  std::atomic<bool> written_{false};    // a write or discard went through
  mutable std::mutex mutex_;            // list_, queues_, generation changes
  std::condition_variable acked_;
  std::shared_ptr<const SnapshotList> list_;
  std::vector<CowOriginQueue*> queues_;
  std::mutex control_mutex_;            // one create/attach/delete at a time
  std::unique_ptr<CowOriginCopier> copier_;
  std::atomic<int64_t> quiesce_timeout_ms_{kDefaultQuiesceTimeout.count()};
};

}  // namespace xbb::storage
