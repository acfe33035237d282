// Per-disk mode: one xbbd process per disk, so a crash or a wedged storage
// takes down only the disk it serves. The supervisor discovers devices
// exactly as daemon mode does (same backend tree, script filter and
// directory checks) and, for each, starts `xbbd --domain D --vdev DEVID`
// (single-device mode), which does all the xenbus work. It restarts a
// process that died abnormally while its device is still there and online
// (the new process adopts the live ring), at a bounded rate; forgets one that
// exited normally (its device was released); stops them all on request; and
// answers the control socket itself (list) or by forwarding device commands
// to the device's process.
//
// libxl waits for InitWait before it runs block-xbbd, so something must
// already watch xenstore when a disk appears: that is this supervisor.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "backend/daemon/ChildProcess.hpp"
#include "backend/daemon/ControlServer.hpp"
#include "backend/daemon/Daemon.hpp"
#include "backend/daemon/EpollSet.hpp"
#include "backend/daemon/PostBox.hpp"
#include "storage/UniqueFd.hpp"
#include "xenstore/BackendPath.hpp"
#include "xenstore/XenStore.hpp"

namespace xbb::backend {

struct SupervisorOptions {
  DaemonOptions discovery;         // backend type and domid, script filter, the supervisor's control socket
  std::string executable = "/proc/self/exe";
  // The command line of the process serving one device, whose control socket is `socket`.
  std::function<std::vector<std::string>(const xs::BackendPath& device, const std::string& socket)> child_command;
  std::string socket_dir = "/run/xbbd";  // per-disk sockets: DIR/DOMID-DEVID.sock
  // At most `max_restarts` restarts of one disk within `restart_window`; the
  // k-th restart in the window waits restart_delay * 2^(k-1) (capped).
  unsigned max_restarts = 5;
  std::chrono::milliseconds restart_window{std::chrono::seconds(60)};
  std::chrono::milliseconds restart_delay{100};
  std::chrono::milliseconds max_restart_delay{std::chrono::seconds(5)};
  // After SIGTERM, how long processes may drain before they are killed.
  std::chrono::milliseconds stop_timeout{std::chrono::seconds(45)};
  // How long a forwarded device command may take.
  std::chrono::milliseconds forward_timeout{std::chrono::seconds(30)};
};

class Supervisor {
 public:
  Supervisor(xs::XenStore& xs, SupervisorOptions options);
  ~Supervisor();

  // Runs until stop is requested and every process has exited. Returns the exit status.
  int run();
  // Thread- and signal-safe (write an eventfd).
  void request_stop();
  void request_reload();  // forwards SIGHUP to every process
  void on_ready(std::function<void()> fn) { on_ready_ = std::move(fn); }

  // Control-thread only. Device commands are passed to the disk's process
  // on a helper thread and answered when it answers, so a slow or wedged
  // disk never holds up the supervisor (and every other disk's discovery).
  void handle_request(const nlohmann::json& request, ControlServer::Reply reply);

 private:
  using Clock = std::chrono::steady_clock;
  struct Disk {
    xs::BackendPath path;
    std::string socket;
    ChildProcess process;                 // pid -1 while not running
    unsigned restarts = 0;                // over the supervisor's lifetime
    std::deque<Clock::time_point> recent_restarts;
    std::optional<Clock::time_point> restart_at;
    bool gave_up = false;
    std::string last_exit;
  };

  void scan_backends();
  void on_watch(const std::string& path, const std::string& token);
  void consider_device(const xs::BackendPath& path);
  void finish(const std::string& key, const xs::BackendPath& path);
  void forget_if_removed(const std::string& key, const xs::BackendPath& path);
  bool start_process(Disk& disk);
  void on_process_exit(const std::string& key);
  bool device_still_wanted(const Disk& disk);
  bool device_still_live(const Disk& disk);
  void schedule_restart(const std::string& key, Disk& disk);
  void restart_due();
  void begin_stop();
  int next_timeout_ms() const;
  size_t running() const;
  Disk* find(const std::string& name);
  void forward(const std::string& name, const nlohmann::json& request, ControlServer::Reply reply);
  void forward_to_all(const nlohmann::json& request, const char* result_key, ControlServer::Reply reply);
  // Runs `ask` on a helper thread and hands its answer to `reply` on the control thread.
  void answer_later(std::function<nlohmann::json()> ask, ControlServer::Reply reply);
  nlohmann::json describe(const std::string& key, const Disk& disk) const;

  xs::XenStore& xs_;
  SupervisorOptions options_;
  std::string base_;
  std::map<std::string, Disk> disks_;
  // Devices whose process exited normally or that were refused: not served
  // again until their directory is removed (a new directory is a new device).
  std::set<std::string> finished_;  // refused: not served until the directory is removed
  LetGoDevices let_go_;             // served and let go: see LetGoDevices
  std::unique_ptr<ControlServer> control_;
  std::function<void()> on_ready_;

  EpollSet epoll_;
  std::shared_ptr<PostBox> post_box_ = std::make_shared<PostBox>();
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> reload_requested_{false};
  bool stopping_ = false;
  bool killed_stragglers_ = false;
  Clock::time_point stop_deadline_{};
};

}  // namespace xbb::backend
