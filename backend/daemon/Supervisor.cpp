#include "backend/daemon/Supervisor.hpp"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "backend/daemon/ControlServer.hpp"
#include "backend/daemon/DeviceDiscovery.hpp"
#include "backend/engine/DeviceDirectory.hpp"
#include "xenstore/Vdev.hpp"
#include "xenstore/XenbusState.hpp"
#include "xenstore/XenstoreKeys.hpp"

namespace xbb::backend {
namespace {

constexpr uint64_t kTagWakeup = 1;
constexpr uint64_t kTagXenstore = 2;
constexpr uint64_t kTagControlBase = EpollSet::kControlTagBase;          // + fd
constexpr uint64_t kTagProcessBase = 1ull << 32;  // + pid
const std::string kBackendsToken = "xbbd-supervisor:backends";

std::string key_of(const xs::BackendPath& path) {
  return std::to_string(path.frontend_domid) + "/" + std::to_string(path.devid);
}

}  // namespace

Supervisor::Supervisor(xs::XenStore& xs, SupervisorOptions options)
    : xs_(xs),
      options_(std::move(options)),
      base_(backend_base_path(options_.discovery.backend_domid, options_.discovery.backend_type)) {
  epoll_.add(post_box_->fd(), kTagWakeup);
  epoll_.add(xs_.watch_fd(), kTagXenstore);
  if (!options_.discovery.control_socket.empty()) {
    control_ = std::make_unique<ControlServer>(
        options_.discovery.control_socket,
        [this](const nlohmann::json& request, ControlServer::Reply reply) { handle_request(request, std::move(reply)); });
    epoll_.add(control_->listen_fd(), kTagControlBase + static_cast<uint64_t>(control_->listen_fd()));
  }
}

Supervisor::~Supervisor() {
  post_box_->close();
  // Normally run() returns only once every process has exited; after an
  // exception, do not leave processes serving rings nobody supervises.
  for (auto& [key, disk] : disks_) {
    if (disk.process.pid > 0) {
      ::kill(disk.process.pid, SIGKILL);
      while (!reap_child(disk.process.pid)) ::usleep(1000);
    }
  }
  try {
    xs_.unwatch(base_, kBackendsToken);
  } catch (const std::exception&) {
  }
}

void Supervisor::request_stop() {
  stop_requested_.store(true);
  post_box_->wake();
}

void Supervisor::request_reload() {
  reload_requested_.store(true);
  post_box_->wake();
}

size_t Supervisor::running() const {
  size_t n = 0;
  for (auto& [key, disk] : disks_) n += disk.process.pid > 0 ? 1 : 0;
  return n;
}

void Supervisor::scan_backends() {
  for_each_backend_device(xs_, base_, [this](const xs::BackendPath& path) { consider_device(path); });
}

void Supervisor::on_watch(const std::string& path, const std::string& token) {
  if (token != kBackendsToken) return;
  auto event = backend_device_event(path);
  if (!event) {
    scan_backends();  // the tree itself or a domain directory appeared
    return;
  }
  const std::string key = key_of(event->device);
  forget_if_removed(key, event->device);
  consider_device(event->device);
}

// A removed directory ends a device's history: a later one with the same
// name is a new device.
void Supervisor::forget_if_removed(const std::string& key, const xs::BackendPath& path) {
  if (xs_.directory(xs::kNoTransaction, path.path)) return;
  finished_.erase(key);
  auto it = disks_.find(key);
  if (it != disks_.end() && it->second.process.pid < 0) disks_.erase(it);
}

// Not served again while this directory exists. A directory already removed
// is not remembered: its removal event has passed, and a new one with the
// same name is a new device.
void Supervisor::finish(const std::string& key, const xs::BackendPath& path) {
  if (xs_.directory(xs::kNoTransaction, path.path)) finished_.insert(key);
}

void Supervisor::consider_device(const xs::BackendPath& path) {
  const std::string key = key_of(path);
  if (stopping_ || disks_.count(key) || finished_.count(key) || let_go_.holds(xs_, key, path)) return;
  if (!runs_script(xs_, path, options_.discovery.script_name)) return;
  // The toolstack creates devices online; one going offline is being removed.
  if (!xs::read_bool(xs_, xs::kNoTransaction, path.path + "/online").value_or(false)) return;
  const auto verdict = vet_backend_directory(xs_, path);
  if (verdict.kind == DirectoryVerdict::Kind::Incomplete) return;  // the next watch event retries
  if (verdict.kind == DirectoryVerdict::Kind::Refused) {
    spdlog::error("{}: refusing to serve {}: {}", key, path.path, verdict.reason);
    report_hotplug_error(xs_, path.path, "xbbd: " + verdict.reason);
    finish(key, path);
    return;
  }
  Disk disk;
  disk.path = path;
  disk.socket = options_.socket_dir + "/" + std::to_string(path.frontend_domid) + "-" + std::to_string(path.devid) + ".sock";
  auto [it, inserted] = disks_.emplace(key, std::move(disk));
  if (!start_process(it->second)) schedule_restart(key, it->second);
}

bool Supervisor::start_process(Disk& disk) {
  const std::string key = key_of(disk.path);
  try {
    disk.process = spawn_child(options_.executable, options_.child_command(disk.path, disk.socket), {"NOTIFY_SOCKET"},
                               {"XBBD_SUPERVISOR_PID=" + std::to_string(::getpid())});
  } catch (const std::exception& e) {
    spdlog::error("{}: cannot start its xbbd process: {}", key, e.what());
    disk.last_exit = std::string("could not start: ") + e.what();
    return false;
  }
  try {
    epoll_.add(disk.process.pidfd.get(), kTagProcessBase + static_cast<uint64_t>(disk.process.pid));
  } catch (const std::exception& e) {
    spdlog::error("{}: cannot watch process {}: {}", key, disk.process.pid, e.what());
  }
  disk.restart_at.reset();
  spdlog::info("{} ({}): served by process {} (control socket {})", key,
               xs::vdev_name(disk.path.devid), disk.process.pid, disk.socket);
  return true;
}

// A device whose process stopped without releasing it: wanted, and its
// backend still past InitWait short of closing.
bool Supervisor::device_still_live(const Disk& disk) {
  if (!device_still_wanted(disk)) return false;
  const auto state = xs::read_state(xs_, xs::kNoTransaction, disk.path.path);
  return state == xs::XenbusState::InitWait || state == xs::XenbusState::Initialised ||
         state == xs::XenbusState::Connected;
}

bool Supervisor::device_still_wanted(const Disk& disk) {
  const std::string& dir = disk.path.path;
  try {
    if (!xs_.directory(xs::kNoTransaction, dir)) return false;
    if (!xs::read_bool(xs_, xs::kNoTransaction, dir + "/online").value_or(false)) return false;
    // The process reported that the device cannot be served; another would too.
    return xs_.read(xs::kNoTransaction, dir + "/hotplug-status").value_or("") != "error";
  } catch (const std::exception& e) {
    spdlog::error("{}: reading its backend directory: {}", dir, e.what());
    return false;
  }
}

void Supervisor::on_process_exit(const std::string& key) {
  auto it = disks_.find(key);
  if (it == disks_.end()) return;
  Disk& disk = it->second;
  auto status = reap_child(disk.process.pid);
  if (!status) return;  // spurious wakeup: still running
  const pid_t pid = disk.process.pid;
  epoll_.remove(disk.process.pidfd.get());
  disk.process = ChildProcess{};
  disk.last_exit = describe_wait_status(*status);
  const bool normal = WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
  if (stopping_) {
    spdlog::log(normal ? spdlog::level::info : spdlog::level::warn, "{}: process {} {}", key, pid, disk.last_exit);
    disks_.erase(it);
    return;
  }
  if (normal && !device_still_live(disk)) {
    spdlog::info("{}: process {} {}: the device was released", key, pid, disk.last_exit);
    let_go_.remember(xs_, key, disk.path);
    const xs::BackendPath path = disk.path;
    disks_.erase(it);
    consider_device(path);  // created anew meanwhile (detach then attach): serve the new one
    return;
  }
  if (normal) {
    // Stopped by a signal that was not ours (an administrator's kill): it
    // left the device connected for a successor, as xbbd does on SIGTERM.
    spdlog::warn("{}: process {} {} but left its device connected; starting a new one to adopt it", key, pid,
                 disk.last_exit);
    schedule_restart(key, disk);
    return;
  }
  if (!device_still_wanted(disk)) {
    spdlog::warn("{}: process {} {}; the device is gone, offline or failed, so it is not restarted", key, pid,
                 disk.last_exit);
    let_go_.remember(xs_, key, disk.path);
    const xs::BackendPath path = disk.path;
    disks_.erase(it);
    consider_device(path);
    return;
  }
  spdlog::error("{}: process {} {}; restarting it", key, pid, disk.last_exit);
  schedule_restart(key, disk);
}

void Supervisor::schedule_restart(const std::string& key, Disk& disk) {
  const auto now = Clock::now();
  while (!disk.recent_restarts.empty() && now - disk.recent_restarts.front() > options_.restart_window) {
    disk.recent_restarts.pop_front();
  }
  if (disk.recent_restarts.size() >= options_.max_restarts) {
    spdlog::error("{}: {} restarts within {} s; giving up on this disk (remove and re-add it, or detach it)", key,
                  disk.recent_restarts.size(),
                  std::chrono::duration_cast<std::chrono::seconds>(options_.restart_window).count());
    disk.gave_up = true;
    report_hotplug_error(xs_, disk.path.path, "xbbd: the process serving this disk keeps failing (" + disk.last_exit + ")");
    return;
  }
  auto delay = std::chrono::milliseconds(0);
  if (!disk.recent_restarts.empty()) {
    delay = std::min(options_.max_restart_delay, options_.restart_delay * (1u << std::min<size_t>(disk.recent_restarts.size() - 1, 16)));
  }
  disk.recent_restarts.push_back(now);
  disk.restart_at = now + delay;
}

void Supervisor::restart_due() {
  const auto now = Clock::now();
  for (auto& [key, disk] : disks_) {
    if (!disk.restart_at || *disk.restart_at > now || disk.process.pid > 0) continue;
    disk.restart_at.reset();
    if (!device_still_wanted(disk)) {
      spdlog::info("{}: the device is gone or offline; not restarting its process", key);
      continue;
    }
    ++disk.restarts;
    if (!start_process(disk)) schedule_restart(key, disk);
  }
  // Those neither running nor waiting for a restart are done with.
  for (auto it = disks_.begin(); it != disks_.end();) {
    const bool done = it->second.process.pid < 0 && !it->second.restart_at && !it->second.gave_up;
    if (done) let_go_.remember(xs_, it->first, it->second.path);
    it = done ? disks_.erase(it) : std::next(it);
  }
}

void Supervisor::begin_stop() {
  stopping_ = true;
  stop_deadline_ = Clock::now() + options_.stop_timeout;
  spdlog::info("xbbd: stopping: {} per-disk process(es) to drain", running());
  for (auto it = disks_.begin(); it != disks_.end();) {
    if (it->second.process.pid > 0) {
      ::kill(it->second.process.pid, SIGTERM);
      ++it;
    } else {
      it = disks_.erase(it);
    }
  }
}

int Supervisor::next_timeout_ms() const {
  std::optional<Clock::time_point> next;
  if (stopping_ && !killed_stragglers_) next = stop_deadline_;
  for (auto& [key, disk] : disks_) {
    if (disk.restart_at && (!next || *disk.restart_at < *next)) next = disk.restart_at;
  }
  if (!next) return -1;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(*next - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
}

int Supervisor::run() {
  xs_.watch(base_, kBackendsToken);
  spdlog::info("xbbd: per-disk mode: watching {}{}; one process per disk", base_,
               options_.discovery.script_name.empty() ? std::string(" (every device)")
                                                      : " (devices with script " + options_.discovery.script_name + ")");
  if (on_ready_) on_ready_();

  const auto watch_fd = epoll_.control_watcher();
  std::array<epoll_event, 16> events;
  for (;;) {
    if (stop_requested_.load() && !stopping_) begin_stop();
    if (reload_requested_.exchange(false)) {
      spdlog::info("xbbd: SIGHUP: forwarded to {} per-disk process(es)", running());
      for (auto& [key, disk] : disks_) {
        if (disk.process.pid > 0) ::kill(disk.process.pid, SIGHUP);
      }
    }
    if (stopping_ && running() == 0) return 0;
    if (stopping_ && !killed_stragglers_ && Clock::now() >= stop_deadline_) {
      killed_stragglers_ = true;
      for (auto& [key, disk] : disks_) {
        if (disk.process.pid < 0) continue;
        spdlog::error("{}: process {} did not drain within {} s; killing it", key, disk.process.pid,
                      std::chrono::duration_cast<std::chrono::seconds>(options_.stop_timeout).count());
        ::kill(disk.process.pid, SIGKILL);
      }
    }
    if (!stopping_) restart_due();

    const int n = epoll_.wait(events, next_timeout_ms());
    if (n < 0) {
      spdlog::error("xbbd: epoll_wait: {}", std::strerror(errno));
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kTagWakeup) {
        post_box_->run();
      } else if (tag == kTagXenstore) {
        drain_watch_events(xs_, [this](const std::string& path, const std::string& token) { on_watch(path, token); });
      } else if (tag >= kTagProcessBase) {
        const auto pid = static_cast<pid_t>(tag - kTagProcessBase);
        for (auto& [key, disk] : disks_) {
          if (disk.process.pid != pid) continue;
          const std::string exited = key;  // on_process_exit may erase the entry
          on_process_exit(exited);
          break;
        }
      } else if (control_) {
        control_->on_ready(static_cast<int>(tag - kTagControlBase), watch_fd);
      }
    }
  }
}

Supervisor::Disk* Supervisor::find(const std::string& name) {
  auto key = device_key_of(name);
  if (!key) return nullptr;
  auto it = disks_.find(*key);
  return it == disks_.end() ? nullptr : &it->second;
}

nlohmann::json Supervisor::describe(const std::string& key, const Disk& disk) const {
  std::string state = "running";
  if (disk.process.pid < 0) state = disk.gave_up ? "failed" : (disk.restart_at ? "restarting" : "stopped");
  nlohmann::json out{{"device", key},
                     {"domid", disk.path.frontend_domid},
                     {"devid", disk.path.devid},
                     {"vdev", xs::vdev_name(disk.path.devid)},
                     {"backend", disk.path.path},
                     {"process", state},
                     {"socket", disk.socket},
                     {"restarts", disk.restarts}};
  if (disk.process.pid > 0) out["pid"] = disk.process.pid;
  if (!disk.last_exit.empty()) out["last_exit"] = disk.last_exit;
  return out;
}

void Supervisor::answer_later(std::function<nlohmann::json()> ask, ControlServer::Reply reply) {
  try {
    std::thread([ask = std::move(ask), reply, box = std::weak_ptr<PostBox>(post_box_)] {
      nlohmann::json answer = ask();
      if (auto post_box = box.lock()) post_box->post([reply, answer = std::move(answer)] { reply(answer); });
    }).detach();
  } catch (const std::system_error& e) {
    reply({{"ok", false}, {"error", std::string("cannot start a thread to pass the command on: ") + e.what()}});
  }
}

namespace {

// Commands whose answer waits for I/O to drain (or a snapshot's quiesce):
// passed on without a time limit; the rest get forward_timeout.
bool may_take_long(const nlohmann::json& request) {
  const std::string command = request.value("command", std::string());
  return command == "pause" || command == "resume" || command == "resize" || command == "snapshot-create";
}

nlohmann::json ask_process(const std::string& name, pid_t pid, const std::string& socket, const nlohmann::json& request,
                           std::chrono::milliseconds timeout) {
  try {
    return control_request(socket, request, timeout);
  } catch (const std::exception& e) {
    return nlohmann::json{{"ok", false},
                          {"error", name + ": its xbbd process (pid " + std::to_string(pid) + ") is not reachable: " +
                                        e.what()}};
  }
}

}  // namespace

// Why a device command cannot reach the process serving `name`, or its answer.
void Supervisor::forward(const std::string& name, const nlohmann::json& request, ControlServer::Reply reply) {
  using nlohmann::json;
  Disk* disk = find(name);
  if (!disk) {
    reply(json{{"ok", false}, {"error", "no such device '" + name + "' (name devices DOMID/VDEV, e.g. 3/xvda or 3/51712)"}});
    return;
  }
  if (disk->process.pid < 0) {
    std::string why = disk->gave_up ? "it kept failing and is not restarted" : "it is being restarted";
    reply(json{{"ok", false},
               {"error", name + ": no xbbd process serves it right now (" + why +
                             (disk->last_exit.empty() ? "" : "; the last one " + disk->last_exit) + ")"}});
    return;
  }
  const auto timeout = may_take_long(request) ? std::chrono::milliseconds(0) : options_.forward_timeout;
  answer_later([name, pid = disk->process.pid, socket = disk->socket, request, timeout] {
    return ask_process(name, pid, socket, request, timeout);
  }, std::move(reply));
}

// A command about every device (stats, snapshot-list): each process's answer
// merged; processes that do not answer are named in "unreachable".
void Supervisor::forward_to_all(const nlohmann::json& request, const char* result_key, ControlServer::Reply reply) {
  using nlohmann::json;
  struct Target {
    std::string name;
    pid_t pid;
    std::string socket;
    std::string not_running;  // why no process answers, when none runs
  };
  std::vector<Target> targets;
  for (auto& [key, disk] : disks_) {
    Target t{key, disk.process.pid, disk.socket, ""};
    if (disk.process.pid < 0) t.not_running = key + ": no xbbd process serves it right now";
    targets.push_back(std::move(t));
  }
  answer_later([targets, request, key = std::string(result_key), timeout = options_.forward_timeout] {
    json merged = json::array(), unreachable = json::array();
    for (const auto& t : targets) {
      json answer = t.not_running.empty() ? ask_process(t.name, t.pid, t.socket, request, timeout)
                                          : json{{"ok", false}, {"error", t.not_running}};
      if (!answer.value("ok", false)) {
        unreachable.push_back({{"device", t.name}, {"error", answer.value("error", std::string("failed"))}});
        continue;
      }
      if (answer.contains(key) && answer[key].is_array()) {
        for (auto& item : answer[key]) merged.push_back(item);
      }
    }
    json out{{"ok", true}, {key, merged}};
    if (!unreachable.empty()) out["unreachable"] = unreachable;
    return out;
  }, std::move(reply));
}

void Supervisor::handle_request(const nlohmann::json& request, ControlServer::Reply reply) {
  using nlohmann::json;
  if (!request.is_object() || !request.contains("command") || !request["command"].is_string()) {
    reply({{"ok", false}, {"error", "a request is a JSON object with a string \"command\""}});
    return;
  }
  const std::string command = request["command"];
  const bool names_device = request.contains("device") && request["device"].is_string();
  if (command == "list") {
    json devices = json::array();
    for (auto& [key, disk] : disks_) devices.push_back(describe(key, disk));
    reply({{"ok", true}, {"per_disk", true}, {"devices", devices}});
    return;
  }
  if (!names_device && command == "stats") return forward_to_all(request, "devices", std::move(reply));
  if (!names_device && command == "snapshot-list") return forward_to_all(request, "snapshots", std::move(reply));
  static const std::set<std::string> device_commands{"stats",  "set",    "detach",        "fault",        "pause",
                                                     "resume", "resize", "snapshot-list", "snapshot-create",
                                                     "snapshot-delete"};
  if (device_commands.count(command)) {
    if (!names_device) {
      reply({{"ok", false}, {"error", command + " needs a \"device\" (DOMID/VDEV)"}});
      return;
    }
    forward(request["device"].get<std::string>(), request, std::move(reply));
    return;
  }
  reply({{"ok", false},
         {"error", "unknown command '" + command +
                       "' (list, stats, set, detach, pause, resume, resize, fault, snapshot-create, snapshot-list, "
                       "snapshot-delete)"}});
}

}  // namespace xbb::backend
