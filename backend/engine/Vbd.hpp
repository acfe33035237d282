// One guest disk: backend/<type>/<domid>/<devid>. Runs the xenbus state
// machine on the control thread, owns the storage and one QueueWorker per
// ring, and never blocks: storage is opened on a helper thread and workers
// report back through the daemon's message queue.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json_fwd.hpp>

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
  Tunables tunables;
};

// What a Vbd needs from the daemon that hosts it.
struct VbdHost {
  xs::XenStore& xs;
  ports::Hypervisor& hypervisor;
  const VbdOptions& options;
  // Runs `fn` on the control thread later, if the Vbd named `key` still exists.
  std::function<void(const std::string& key, std::function<void(Vbd&)> fn)> post;
  // Opens storage for a target; runs on a helper thread.
  std::function<std::unique_ptr<storage::Storage>(const std::string& target, bool read_only)> open_storage;
  // Snapshot stores to re-attach per origin, and where new ones are recorded.
  SnapshotCatalog* snapshots = nullptr;
};

class Vbd {
 public:
  Vbd(VbdHost& host, xs::BackendPath path);
  ~Vbd();
  Vbd(const Vbd&) = delete;
  Vbd& operator=(const Vbd&) = delete;

  static std::string key_of(const xs::BackendPath& path);
  const std::string& key() const { return key_; }
  const xs::BackendPath& path() const { return path_; }
  const std::string& frontend_path() const { return frontend_; }
  xs::DomId domid() const { return path_.frontend_domid; }

  // Security checks, features, InitWait, storage open. False: refused (logged).
  bool start();
  void on_backend_changed();
  void on_frontend_changed();
  void on_domain_gone();
  // xbbctl detach: tell the frontend we are going, drain, then release.
  void detach();
  // Daemon shutdown (SIGTERM): drain, answer Closing, release without waiting for the frontend.
  void detach_for_shutdown();
  std::optional<std::string> set_tunable(const std::string& name, const std::string& value);

  // Snapshots of this disk (xbbctl snapshot ...). Throw std::runtime_error
  // with a message for the administrator. Creation waits (bounded) for the
  // writes in flight to drain: the only control-thread wait in the daemon.
  nlohmann::json snapshot_create(const std::string& store, uint32_t cluster_size);
  nlohmann::json snapshot_list() const;
  void snapshot_delete(const std::string& id_or_store, bool delete_store);
  // Fault injection (xbbctl fault): a spec as in FaultSpec.hpp.
  std::optional<std::string> set_fault(const std::string& spec);
  // The name snapshot targets use for this disk: "D/vdev", e.g. "3/xvda".
  std::string origin_name() const;
  // Nothing left to do: the daemon may destroy this Vbd.
  bool released() const { return phase_ == Phase::Released; }

  StatsSnapshot stats() const;
  std::vector<StatsSnapshot> queue_stats() const;
  size_t mapped_grant_pages() const;
  void describe(nlohmann::json& out) const;

 private:
  enum class Phase { New, InitWait, Connected, Closing, Closed, Releasing, Released };

  void publish_features();
  void open_storage_async();
  void on_storage_opened(std::shared_ptr<StorageStack> stack, std::string error);
  void report_hotplug_error(const std::string& message);
  void connect();
  bool connect_queues(std::string& error);
  void publish_connected();
  void stop_workers();
  void on_queue_event(unsigned queue, QueueEvent event);
  void maybe_finish_closing();
  void fail(const std::string& message);
  void set_state(xs::XenbusState state);
  void release();
  bool online() const;
  std::optional<xs::XenbusState> frontend_state() const;
  const char* phase_name() const;

  VbdHost& host_;
  xs::BackendPath path_;
  std::string key_;
  std::string backend_;   // the backend directory
  std::string frontend_;
  Phase phase_ = Phase::New;
  bool read_only_ = false;
  bool cdrom_ = false;
  bool discard_enabled_ = true;
  std::string target_;
  std::shared_ptr<storage::Storage> storage_;             // the top of the stack: what queues open
  std::shared_ptr<storage::CowOriginStorage> origin_;     // snapshots hang here
  storage::FaultInjectionStorage* fault_ = nullptr;       // when fault injection is on
  std::string storage_error_;
  bool storage_opening_ = false;
  std::thread opener_;
  bool persistent_ = false;
  unsigned ring_page_order_ = 0;
  std::string abi_name_;
  Tunables tunables_;
  std::vector<std::unique_ptr<QueueWorker>> workers_;
  StatsSnapshot retired_stats_;  // totals of workers already destroyed
  bool release_when_closed_ = false;
  bool closed_on_release_ = false;  // write Closed once drained (the frontend vanished)
};

}  // namespace xbb::backend
