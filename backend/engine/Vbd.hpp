// One guest disk: backend/<type>/<domid>/<devid>. Runs the xenbus state
// machine on the control thread, owns the storage and one QueueWorker per
// ring, and never blocks: storage is opened on a helper thread and workers
// report back through the daemon's message queue.
//
// Operations that must cost the guest nothing (DESIGN.md §6):
// - quiesce_for_shutdown(): a daemon stop or restart is not a close. The
//   workers stop consuming, answer what is in flight and unmap; the device
//   stays Connected in xenstore and the next xbbd adopts its rings.
// - pause()/resume(): the same drain, but the process stays; the guest's
//   requests wait in its ring (held, not failed) until resume() maps the rings
//   again, optionally on a new target of at least the same size.
// - resize(): a pause, a reopen of the target and a resume that announces the
//   new size as Linux blkback does (sectors and Connected in one transaction).
// What an administrator set on a device (paused, fault injection, tunables)
// is kept in the backend directory under xbbd/, so a restarted xbbd re-reads
// it; a new target replaces the backend's `params`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "backend/engine/LogLimiter.hpp"
#include "backend/engine/QueueWorker.hpp"
#include "backend/engine/SnapshotCatalog.hpp"
#include "backend/engine/Statistics.hpp"
#include "backend/engine/StorageStack.hpp"
#include "backend/engine/Tunables.hpp"
#include "ring/ports/GuestMemory.hpp"
#include "storage/Storage.hpp"
#include "xenstore/BackendPath.hpp"
#include "xenstore/XenStore.hpp"
#include "xenstore/XenbusState.hpp"

namespace xbb::backend {

class Vbd;

struct VbdOptions {
  unsigned max_queues = 1;
  unsigned max_ring_page_order = 5;
  unsigned max_indirect_segments = 256;
  bool persistent_grants = true;       // advertise feature-persistent
  size_t persistent_grants_per_queue = 1056;
  size_t bounce_pages_per_queue = 2048;
  bool direct_io = false;              // O_DIRECT for file targets
  bool fault_injection = false;        // stack a fault-injection layer on every disk (xbbctl fault)
  // Claim writable targets exclusively (Storage::claim): an OFD lock on images,
  // O_EXCL on block devices. Off only for tests that share an image on purpose.
  bool claim_targets = true;
  Tunables tunables;
};

// What a Vbd needs from the daemon that hosts it.
struct VbdHost {
  xs::XenStore& xs;
  ports::Hypervisor& hypervisor;
  const VbdOptions& options;
  // Runs `fn` on the control thread later, if the Vbd that was `instance`
  // still exists (a new device with the same name is a different instance).
  // Callable from any thread, also after the daemon is gone (then a no-op).
  std::function<void(uint64_t instance, std::function<void(Vbd&)> fn)> post;
  // Runs `fn` on the control thread later, whatever happened to any Vbd
  // meanwhile (an answer owed to a client). Any thread; a no-op once the
  // daemon is gone.
  std::function<void(std::function<void()> fn)> post_control;
  // Opens storage for a target; runs on a helper thread.
  std::function<std::unique_ptr<storage::Storage>(const std::string& target, bool read_only)> open_storage;
  // Snapshot stores to re-attach per origin, and where new ones are recorded.
  SnapshotCatalog* snapshots = nullptr;
};

class Vbd {
 public:
  // `done` gets nothing on success or the reason of a failure, on the control thread.
  using Done = std::function<void(std::optional<std::string> error)>;

  Vbd(VbdHost& host, xs::BackendPath path);
  ~Vbd();
  Vbd(const Vbd&) = delete;
  Vbd& operator=(const Vbd&) = delete;

  static std::string key_of(const xs::BackendPath& path);
  const std::string& key() const { return key_; }
  uint64_t instance() const { return instance_; }
  const xs::BackendPath& path() const { return path_; }
  const std::string& frontend_path() const { return frontend_; }
  xs::DomId domid() const { return path_.frontend_domid; }

  // Security checks, features, InitWait, storage open. False: refused (logged).
  bool start();
  void on_backend_changed();
  // Returns false when the frontend's state was what it was the last time
  // (a watch event that brought nothing: what a flood is made of).
  bool on_frontend_changed();
  // The daemon took the frontend-state watch away for a while (the guest
  // rewrites its state in a loop: FrontendWatchGuard); counted for xbbctl list.
  void note_frontend_flood() { ++frontend_floods_; }
  void on_domain_gone();
  // xbbctl detach: tell the frontend we are going, drain, then release.
  void detach();
  // Daemon shutdown (SIGTERM, restart, upgrade): drain and release the rings,
  // leaving the device in xenstore as it is for the next xbbd to adopt.
  void quiesce_for_shutdown();
  // xbbctl pause / resume / resize (see the top of this file). Each answers
  // through `done` once the work is finished or has failed.
  void pause(Done done);
  void resume(const std::string& new_target, Done done);
  void resize(Done done);
  // The size watcher saw the backing store at `bytes`: grows the disk.
  void on_size_seen(uint64_t bytes);
  std::optional<std::string> set_tunable(const std::string& name, const std::string& value);
  // SIGHUP: the config file's tunables replace every per-device setting.
  void reset_tunables(const Tunables& tunables);

  // Snapshots of this disk (xbbctl snapshot ...). Creation waits (bounded)
  // for the writes in flight to drain, and a store's creation or deletion
  // touches the filesystem: both run on a helper thread and answer through
  // `answer` ({"ok": true, ...} or {"ok": false, "error": ...}) on the
  // control thread, also if the disk goes meanwhile.
  using Answer = std::function<void(nlohmann::json)>;
  void snapshot_create(const std::string& store, uint32_t cluster_size, Answer answer);
  nlohmann::json snapshot_list() const;
  void snapshot_delete(const std::string& id_or_store, bool delete_store, Answer answer);
  // Fault injection (xbbctl fault): a spec as in FaultSpec.hpp.
  std::optional<std::string> set_fault(const std::string& spec);
  // The name snapshot targets use for this disk: "D/vdev", e.g. "3/xvda".
  std::string origin_name() const;
  // Nothing left to do: the daemon may destroy this Vbd.
  bool released() const { return phase_ == Phase::Released; }
  // The storage being served (for the size watcher), or null.
  std::shared_ptr<storage::Storage> storage() const { return storage_; }

  StatsSnapshot stats() const;
  std::vector<StatsSnapshot> queue_stats() const;
  size_t mapped_grant_pages() const;
  void describe(nlohmann::json& out) const;

 private:
  enum class Phase { New, InitWait, Connected, Pausing, Paused, Reopening, Closing, Closed, Releasing, Released };
  // What a finished storage open leads to.
  enum class OpenPurpose { Serve, Resume, Resize };
  // The negotiation limits in force: this daemon's options, or for an adopted
  // connection what the previous xbbd advertised (the frontend chose within those).
  struct Limits {
    unsigned max_ring_page_order = 0;
    unsigned max_queues = 1;
    unsigned max_indirect_segments = 0;
  };
  struct Opened {
    std::shared_ptr<StorageStack> stack;
    std::unique_ptr<storage::StorageClaim> claim;
    std::string error;
  };

  void publish_features();
  Limits adopted_limits() const;
  bool shares_image_with_same_vm(const std::string& target) const;
  bool open_storage_async(const std::string& target, bool claim, OpenPurpose purpose);
  void on_storage_opened(std::shared_ptr<Opened> opened, OpenPurpose purpose);
  void install_storage(Opened& opened);
  void report_hotplug_error(const std::string& message);
  void connect();
  bool connect_queues(std::string& error);
  void publish_connected();
  void stop_workers();
  void on_queue_event(unsigned queue, QueueEvent event);
  void maybe_finish_closing();
  void finish_pause();
  void resume_workers(std::optional<std::string> error);
  void answer_waiters(std::vector<Done>& waiters, const std::optional<std::string>& error);
  void begin_closing();
  void fail(const std::string& message);
  void write_own_directory(const std::function<void(xs::TxId)>& writes);
  void set_state(xs::XenbusState state);
  void release();
  bool online() const;
  std::optional<xs::XenbusState> frontend_state() const;
  const char* phase_name() const;
  // The administrator's settings kept under <backend>/xbbd/ (see the top).
  void remember(const std::string& node, const std::string& value);
  void forget(const std::string& node);
  void restore_remembered_settings();
  // For lines a guest can cause (LogLimiter.hpp): whether to log, and the
  // count of lines left out to append.
  bool guest_log();
  std::string suppressed_note();

  VbdHost& host_;
  xs::BackendPath path_;
  std::string key_;
  uint64_t instance_;
  std::string backend_;   // the backend directory
  std::string frontend_;
  Phase phase_ = Phase::New;
  bool read_only_ = false;
  bool cdrom_ = false;
  bool discard_enabled_ = true;
  bool adopted_ = false;  // started on a connection another xbbd made
  Limits limits_;
  std::string target_;
  std::unique_ptr<storage::StorageClaim> claim_;          // ownership of target_ (may be null)
  std::shared_ptr<storage::Storage> storage_;             // the top of the stack: what queues open
  std::shared_ptr<storage::CowOriginStorage> origin_;     // snapshots hang here
  storage::FaultInjectionStorage* fault_ = nullptr;       // when fault injection is on
  std::string storage_error_;
  bool storage_opening_ = false;
  std::string reopen_target_;                             // the target a Resume/Resize open is for
  bool persistent_ = false;
  unsigned ring_page_order_ = 0;
  std::string abi_name_;
  Tunables tunables_;
  std::vector<std::unique_ptr<QueueWorker>> workers_;
  StatsSnapshot retired_stats_;  // totals of workers already destroyed
  bool release_when_closed_ = false;
  bool closed_on_release_ = false;  // write Closed once drained (the frontend vanished)
  bool start_paused_ = false;       // a restarted xbbd finds the device paused
  std::vector<Done> pause_waiters_;   // answered when the drain completes
  std::vector<Done> resume_waiters_;  // answered when the device is Connected again
  bool resume_after_pause_ = false;   // a resize: pause, reopen, resume
  LogLimiter log_limiter_;
  uint64_t frontend_changes_ = 0;     // times the frontend's state was looked at (xbbctl list)
  uint64_t frontend_floods_ = 0;      // times its watch was suspended for a flood (xbbctl list)
  std::optional<xs::XenbusState> last_frontend_state_;  // as on_frontend_changed() last read it
};

}  // namespace xbb::backend
