// The control thread: discovers vbds by watching the backend tree, runs each
// Vbd's state machine, releases devices of dead domains, serves the control
// socket and stops cleanly on request. Everything here runs on one thread;
// other threads reach it only through post().
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "backend/daemon/ControlServer.hpp"
#include "backend/daemon/DeviceDiscovery.hpp"
#include "backend/daemon/EpollSet.hpp"
#include "backend/daemon/FrontendWatchGuard.hpp"
#include "backend/daemon/LockFile.hpp"
#include "backend/daemon/PostBox.hpp"
#include "storage/UniqueFd.hpp"
#include "backend/engine/Vbd.hpp"

namespace xbb::backend {

class SizeWatcher;

struct DaemonOptions {
  std::string backend_type = "vbd";      // "vbd3" for Xen >= 4.19's tap type
  xs::DomId backend_domid = 0;           // where our backend tree lives (driver domains)
  // Daemon mode serves every device whose `script` ends in this name ("" = all).
  std::string script_name = "block-xbbd";
  // Single-device mode: only this device, and exit once it is released.
  std::optional<xs::DomId> only_domain;
  std::optional<uint32_t> only_devid;
  std::string control_socket;            // "" = no control socket
  // Per-disk mode: this process only supervises one single-device xbbd
  // process per device (see Supervisor.hpp).
  bool per_disk = false;
  // Where snapshots are recorded for re-attachment after a restart
  // (snapshots.json); "" keeps them for this run only.
  std::string state_dir;
  // Where the per-device lock files live (LockFile.hpp; xbbd puts them next
  // to its control socket); "" takes none.
  std::string lock_dir;
  // How often the backing stores' sizes are checked for growth
  // (SizeWatcher.hpp); 0 never.
  std::chrono::milliseconds size_check_interval{2000};
  VbdOptions vbd;
};

class Daemon {
 public:
  Daemon(xs::XenStore& xs, ports::Hypervisor& hypervisor, DaemonOptions options,
         std::function<std::unique_ptr<storage::Storage>(const std::string&, bool)> open_storage);
  ~Daemon();

  // Runs the control loop until stop is requested and every device is
  // released, or (single-device mode) the device is released. Returns the
  // process exit status.
  int run();
  // Thread- and signal-safe (writes an eventfd).
  void request_stop();
  // Thread-safe: runs fn on the control thread.
  void post(std::function<void()> fn);
  // Re-applies default tunables to every device (SIGHUP reload).
  void set_default_tunables(const Tunables& tunables);
  // Called once the control loop has everything set up (sd_notify READY=1).
  void on_ready(std::function<void()> fn) { on_ready_ = std::move(fn); }

  // Control-thread only. A control request, answered through `reply` now or
  // (pause, resume, resize) once the work is done.
  void handle_request(const nlohmann::json& request, ControlServer::Reply reply);
  // The requests that are answered at once.
  nlohmann::json handle_command(const nlohmann::json& request);
  nlohmann::json handle_snapshot_command(const std::string& command, const nlohmann::json& request);
  // snapshot-create and snapshot-delete: answered once done on a helper thread.
  void handle_snapshot_change(const std::string& command, const nlohmann::json& request, ControlServer::Reply reply);
  // Devices being served (released ones awaiting removal do not count).
  size_t device_count() const;

 private:
  void scan_backends();
  // The xenstore events of one pass, per device.
  struct WatchBatch {
    bool rescan = false;
    std::map<std::string, xs::BackendPath> new_devices;  // not served yet
    std::set<std::string> backend_changed;               // served: online or state changed
    bool domains_released = false;
    std::map<std::string, unsigned> frontend_changed;    // the frontend's state changed: events
  };
  void suspend_frontend_watch(const std::string& key);
  void resume_frontend_watches();
  int wait_timeout_ms() const;
  void note_watch(const std::string& path, const std::string& token, WatchBatch& batch);
  void apply_watch_batch(WatchBatch& batch);
  void consider_device(const xs::BackendPath& path);
  void drop_released();
  bool lock_device(const std::string& key, const xs::BackendPath& path);
  bool wanted(const xs::BackendPath& path);
  Vbd* find(const std::string& key_or_name);
  Vbd* find_instance(uint64_t instance);
  std::string base_path() const;

  xs::XenStore& xs_;
  ports::Hypervisor& hypervisor_;
  DaemonOptions options_;
  SnapshotCatalog snapshots_;
  VbdHost host_;
  std::map<std::string, std::unique_ptr<Vbd>> vbds_;
  // Devices refused by Vbd::start() or detached by command: not served again
  // (the refusal writes into their directory, which fires the watch again)
  // until their directory is removed.
  std::set<std::string> refused_;
  LetGoDevices released_;
  // More state events per second than any frontend makes in a connect.
  FrontendWatchGuard frontend_guard_{100, std::chrono::seconds(1), std::chrono::seconds(30)};
  std::map<std::string, LockFile> device_locks_;  // per served device, when lock_dir is set
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<SizeWatcher> size_watcher_;
  std::function<void()> on_ready_;

  EpollSet epoll_;
  std::shared_ptr<PostBox> post_box_ = std::make_shared<PostBox>();
  std::atomic<bool> stop_requested_{false};
  bool stopping_ = false;
  bool served_any_ = false;
  bool refused_single_ = false;
};

}  // namespace xbb::backend
