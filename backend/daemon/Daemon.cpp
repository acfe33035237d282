#include "backend/daemon/Daemon.hpp"

#include <sys/epoll.h>
#include <algorithm>
#include <atomic>

#include <cerrno>
#include <cstring>
#include <system_error>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "backend/daemon/ControlServer.hpp"
#include "backend/daemon/DeviceDiscovery.hpp"
#include "backend/daemon/SizeWatcher.hpp"
#include "backend/engine/FastClock.hpp"
#include "xenstore/Vdev.hpp"
#include "xenstore/XenbusState.hpp"
#include "xenstore/XenstoreKeys.hpp"

namespace xbb::backend {
namespace {

constexpr uint64_t kTagWakeup = 1;
constexpr uint64_t kTagXenstore = 2;
constexpr uint64_t kTagControlBase = EpollSet::kControlTagBase;  // + fd
const std::string kBackendsToken = "xbbd:backends";
const std::string kReleaseToken = "xbbd:release-domain";
const std::string kFrontendTokenPrefix = "xbbd:frontend:";
constexpr size_t kMaxWatchEventsPerPass = 1024;

}  // namespace

Daemon::Daemon(xs::XenStore& xs, ports::Hypervisor& hypervisor, DaemonOptions options,
               std::function<std::unique_ptr<storage::Storage>(const std::string&, bool)> open_storage)
    : xs_(xs),
      hypervisor_(hypervisor),
      options_(std::move(options)),
      snapshots_(options_.state_dir.empty() ? "" : options_.state_dir + "/snapshots.json"),
      host_{xs, hypervisor, options_.vbd, nullptr, nullptr, std::move(open_storage), &snapshots_} {
  if (auto error = snapshots_.load()) spdlog::error("xbbd: {}; no snapshot will be re-attached", *error);
  // Holds the post box, not the daemon: storage openers may outlive it.
  host_.post = [box = std::weak_ptr<PostBox>(post_box_), this](uint64_t instance, std::function<void(Vbd&)> fn) {
    if (auto post_box = box.lock()) {
      post_box->post([this, instance, fn = std::move(fn)] {
        if (Vbd* vbd = find_instance(instance)) fn(*vbd);
      });
    }
  };
  host_.post_control = [box = std::weak_ptr<PostBox>(post_box_)](std::function<void()> fn) {
    if (auto post_box = box.lock()) post_box->post(std::move(fn));
  };
  epoll_.add(post_box_->fd(), kTagWakeup);
  epoll_.add(xs_.watch_fd(), kTagXenstore);
  if (!options_.control_socket.empty()) {
    control_ = std::make_unique<ControlServer>(
        options_.control_socket,
        [this](const nlohmann::json& request, ControlServer::Reply reply) { handle_request(request, std::move(reply)); });
    epoll_.add(control_->listen_fd(), kTagControlBase + static_cast<uint64_t>(control_->listen_fd()));
  }
}

Daemon::~Daemon() {
  size_watcher_.reset();
  post_box_->close();
  vbds_.clear();
  try {
    xs_.unwatch(base_path(), kBackendsToken);
    xs_.unwatch("@releaseDomain", kReleaseToken);
  } catch (const std::exception&) {
  }
}

std::string Daemon::base_path() const { return backend_base_path(options_.backend_domid, options_.backend_type); }

void Daemon::request_stop() {
  stop_requested_.store(true);
  post_box_->wake();
}

void Daemon::post(std::function<void()> fn) { post_box_->post(std::move(fn)); }

void Daemon::set_default_tunables(const Tunables& tunables) {
  post([this, tunables] {
    options_.vbd.tunables = tunables;
    for (auto& [key, vbd] : vbds_) vbd->reset_tunables(tunables);
  });
}

// One xbbd per device: a hand-started `xbbd --domain D --vdev V` must not
// adopt a ring the daemon serves, nor the daemon one that such a process serves.
bool Daemon::lock_device(const std::string& key, const xs::BackendPath& path) {
  if (options_.lock_dir.empty() || device_locks_.count(key)) return true;
  const std::string file = options_.lock_dir + "/" + path.type + "-" + std::to_string(path.frontend_domid) + "-" +
                           std::to_string(path.devid) + ".lock";
  auto lock = LockFile::acquire(file);
  if (auto* why = std::get_if<std::string>(&lock)) {
    spdlog::error("{}: another xbbd serves this device ({}); leaving it to that one", key, *why);
    return false;
  }
  device_locks_.emplace(key, std::move(std::get<LockFile>(lock)));
  return true;
}

bool Daemon::wanted(const xs::BackendPath& path) {
  if (options_.only_domain) {
    return path.frontend_domid == *options_.only_domain && (!options_.only_devid || path.devid == *options_.only_devid);
  }
  return runs_script(xs_, path, options_.script_name);
}

void Daemon::consider_device(const xs::BackendPath& path) {
  const std::string key = Vbd::key_of(path);
  if (vbds_.count(key) || stopping_) return;
  if (refused_.count(key)) {
    if (xs_.directory(xs::kNoTransaction, path.path)) return;
    refused_.erase(key);  // removed: a new directory there is a new device
    return;
  }
  if (released_.holds(xs_, key, path)) {
    // Released already (its domain died first, say) and now the toolstack
    // removes it: answer the Closed it waits for, or it waits its timeout out.
    if (!xs::read_bool(xs_, xs::kNoTransaction, path.path + "/online").value_or(true) &&
        xs::read_state(xs_, xs::kNoTransaction, path.path) == xs::XenbusState::Closing) {
      xs::write_state(xs_, xs::kNoTransaction, path.path, xs::XenbusState::Closed);
    }
    return;
  }
  if (!wanted(path)) return;
  if (!lock_device(key, path)) {
    refused_.insert(key);
    if (options_.only_domain) refused_single_ = true;
    return;
  }
  auto vbd = std::make_unique<Vbd>(host_, path);
  if (!vbd->start()) {
    if (vbd->released()) refused_.insert(key);
    if (vbd->released() && options_.only_domain) refused_single_ = true;
    device_locks_.erase(key);
    return;  // incomplete directory: the next watch event retries
  }
  try {
    // The frontend's state, not its directory: what Linux blkback watches.
    // The rest is read once, at connect; a guest writing other nodes in a
    // loop then costs the daemon nothing.
    xs_.watch(vbd->frontend_path() + "/state", kFrontendTokenPrefix + key);
  } catch (const std::exception& e) {
    spdlog::error("{}: cannot watch {}: {}", key, vbd->frontend_path(), e.what());
  }
  served_any_ = true;
  vbds_.emplace(key, std::move(vbd));
}

void Daemon::scan_backends() {
  for_each_backend_device(xs_, base_path(), [this](const xs::BackendPath& path) { consider_device(path); });
}

// Notes what an event is about; apply_watch_batch() acts once per device,
// however many events a batch holds for it.
void Daemon::note_watch(const std::string& path, const std::string& token, WatchBatch& batch) {
  if (token == kBackendsToken) {
    auto event = path == base_path() ? std::nullopt : backend_device_event(path);
    if (!event) {
      // The tree itself, a new domain directory (backend/vbd/D) or something we do not know.
      batch.rescan = true;
      return;
    }
    const std::string key = Vbd::key_of(event->device);
    if (!vbds_.count(key)) {
      batch.new_devices.emplace(key, event->device);
    } else if (event->subpath.empty() || event->subpath == "online" || event->subpath == "state") {
      batch.backend_changed.insert(key);
    }
  } else if (token == kReleaseToken) {
    batch.domains_released = true;
  } else if (token.rfind(kFrontendTokenPrefix, 0) == 0) {
    ++batch.frontend_changed[token.substr(kFrontendTokenPrefix.size())];
  }
}

void Daemon::suspend_frontend_watch(const std::string& key) {
  auto it = vbds_.find(key);
  if (it == vbds_.end() || frontend_guard_.suspended(key)) return;
  try {
    xs_.unwatch(it->second->frontend_path() + "/state", kFrontendTokenPrefix + key);
  } catch (const std::exception& e) {
    spdlog::error("{}: cannot remove the watch on {}: {}", key, it->second->frontend_path(), e.what());
    return;
  }
  const auto cooldown = frontend_guard_.suspend(key, FrontendWatchGuard::Clock::now());
  it->second->note_frontend_flood();
  spdlog::warn("{}: the guest rewrites {}/state in a loop: its changes are read again in {} ms, other guests go first",
               key, it->second->frontend_path(), cooldown.count());
}

void Daemon::resume_frontend_watches() {
  for (const auto& key : frontend_guard_.resumable(FrontendWatchGuard::Clock::now())) {
    auto it = vbds_.find(key);
    if (it == vbds_.end()) continue;
    try {
      // Fires once at once, so a change made meanwhile is read now.
      xs_.watch(it->second->frontend_path() + "/state", kFrontendTokenPrefix + key);
    } catch (const std::exception& e) {
      spdlog::error("{}: cannot watch {}: {}", key, it->second->frontend_path(), e.what());
    }
  }
}

int Daemon::wait_timeout_ms() const {
  const auto deadline = frontend_guard_.next_deadline();
  if (!deadline) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - FrontendWatchGuard::Clock::now());
  return static_cast<int>(std::max<int64_t>(left.count(), 0));
}

void Daemon::apply_watch_batch(WatchBatch& batch) {
  auto guarded = [](const std::string& what, const std::function<void()>& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      spdlog::error("xbbd: handling a change of {}: {}", what, e.what());
    }
  };
  if (batch.rescan) guarded(base_path(), [this] { scan_backends(); });
  for (auto& entry : batch.new_devices) {
    const xs::BackendPath& path = entry.second;
    guarded(path.path, [this, &path] { consider_device(path); });
  }
  for (const auto& key : batch.backend_changed) {
    auto it = vbds_.find(key);
    if (it != vbds_.end()) guarded(it->second->path().path, [&] { it->second->on_backend_changed(); });
  }
  if (batch.domains_released) {
    for (auto& entry : vbds_) {
      Vbd& vbd = *entry.second;
      if (!hypervisor_.domain_exists(vbd.domid())) guarded(entry.first, [&vbd] { vbd.on_domain_gone(); });
    }
  }
  for (const auto& entry : batch.frontend_changed) {
    const std::string& key = entry.first;
    const unsigned events = entry.second;
    auto it = vbds_.find(key);
    if (it == vbds_.end()) continue;
    guarded(it->second->frontend_path(), [&] {
      // Only events that brought no new state count towards a flood: a
      // frontend reconnecting quickly changes its state every time.
      if (!it->second->on_frontend_changed() &&
          frontend_guard_.note_events(key, events, FrontendWatchGuard::Clock::now()))
        suspend_frontend_watch(key);
    });
  }
}

void Daemon::drop_released() {
  std::vector<xs::BackendPath> dropped;
  for (auto it = vbds_.begin(); it != vbds_.end();) {
    if (it->second->released()) {
      try {
        if (!frontend_guard_.suspended(it->first))
          xs_.unwatch(it->second->frontend_path() + "/state", kFrontendTokenPrefix + it->first);
      } catch (const std::exception&) {
      }
      frontend_guard_.forget(it->first);
      try {
        released_.remember(xs_, it->first, it->second->path());
      } catch (const std::exception&) {
      }
      dropped.push_back(it->second->path());
      device_locks_.erase(it->first);
      it = vbds_.erase(it);
    } else {
      ++it;
    }
  }
  // The toolstack may have created the device anew (xl block-detach then
  // block-attach) while the old one was still being released: its events
  // came while the name was taken, and none will come again.
  if (!stopping_) {
    for (const auto& path : dropped) {
      try {
        consider_device(path);
      } catch (const std::exception& e) {
        spdlog::error("{}: {}", path.path, e.what());
      }
    }
  }
}

int Daemon::run() {
  xs_.watch(base_path(), kBackendsToken);
  xs_.watch("@releaseDomain", kReleaseToken);
  spdlog::info("xbbd: watching {}{}", base_path(),
               options_.only_domain ? fmt::format(" for domain {} device {}", *options_.only_domain,
                                                  options_.only_devid ? xs::vdev_name(*options_.only_devid) : "*")
                                    : (options_.script_name.empty() ? std::string(" (every device)")
                                                                    : " (devices with script " + options_.script_name + ")"));
  // Before any worker starts: the choice may take a few sleeps to measure.
  spdlog::info("xbbd: I/O timing clock: {}", fast_clock::calibrate().reason);
  if (options_.size_check_interval.count() > 0) {
    try {
      size_watcher_ = std::make_unique<SizeWatcher>(
          post_box_, options_.size_check_interval,
          [this] {
            std::vector<SizeWatcher::Disk> disks;
            for (auto& [key, vbd] : vbds_) {
              if (auto storage = vbd->storage())
                disks.push_back({vbd->instance(), storage, storage->properties().size_bytes});
            }
            return disks;
          },
          [this](uint64_t instance, uint64_t bytes) {
            if (Vbd* vbd = find_instance(instance)) vbd->on_size_seen(bytes);
          });
    } catch (const std::exception& e) {
      spdlog::error("xbbd: cannot start the size watcher ({}); disks grow only with xbbctl resize", e.what());
    }
  }
  if (on_ready_) on_ready_();

  const auto watch_fd = epoll_.control_watcher();
  std::array<epoll_event, 16> events;
  for (;;) {
    if (stop_requested_.load() && !stopping_) {
      stopping_ = true;
      // Not a close: every disk stays Connected for the next xbbd (Vbd.hpp).
      spdlog::info("xbbd: stopping: draining {} device(s); they stay connected for the next xbbd", vbds_.size());
      size_watcher_.reset();
      for (auto& [key, vbd] : vbds_) vbd->quiesce_for_shutdown();
    }
    drop_released();
    if (stopping_ && vbds_.empty()) return 0;
    if (options_.only_domain && ((served_any_ && vbds_.empty()) || refused_single_)) return refused_single_ ? 1 : 0;

    const int n = epoll_.wait(events, wait_timeout_ms());
    if (n < 0) {
      spdlog::error("xbbd: epoll_wait: {}", std::strerror(errno));
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kTagWakeup) {
        post_box_->run();
      } else if (tag == kTagXenstore) {
        // Bounded, so that a flood of events (a guest rewriting its state in
        // a loop) leaves room for the control socket and posted work; the
        // rest stay queued and the fd stays readable.
        WatchBatch batch;
        drain_watch_events(
            xs_, [this, &batch](const std::string& path, const std::string& token) { note_watch(path, token, batch); },
            kMaxWatchEventsPerPass);
        apply_watch_batch(batch);
      } else if (control_) {
        control_->on_ready(static_cast<int>(tag - kTagControlBase), watch_fd);
      }
    }
    resume_frontend_watches();
  }
}

size_t Daemon::device_count() const {
  size_t n = 0;
  for (auto& [key, vbd] : vbds_) n += vbd->released() ? 0 : 1;
  return n;
}

Vbd* Daemon::find_instance(uint64_t instance) {
  for (auto& [key, vbd] : vbds_) {
    if (vbd->instance() == instance) return vbd.get();
  }
  return nullptr;
}

Vbd* Daemon::find(const std::string& name) {
  if (auto it = vbds_.find(name); it != vbds_.end()) return it->second.get();
  // "3/xvda" as well as "3/51712"
  auto key = device_key_of(name);
  if (!key) return nullptr;
  auto it = vbds_.find(*key);
  return it == vbds_.end() ? nullptr : it->second.get();
}

void Daemon::handle_request(const nlohmann::json& request, ControlServer::Reply reply) {
  using nlohmann::json;
  const std::string name = request.is_object() && request.contains("command") && request["command"].is_string()
                               ? request["command"].get<std::string>()
                               : std::string();
  if (name == "snapshot-create" || name == "snapshot-delete") {
    handle_snapshot_change(name, request, std::move(reply));
    return;
  }
  const bool async = request.is_object() && request.contains("command") && request["command"].is_string() &&
                     (request["command"] == "pause" || request["command"] == "resume" || request["command"] == "resize");
  if (!async) {
    reply(handle_command(request));
    return;
  }
  const std::string command = request["command"];
  Vbd* vbd = request.contains("device") && request["device"].is_string() ? find(request["device"].get<std::string>())
                                                                         : nullptr;
  if (!vbd) {
    reply({{"ok", false},
           {"error", "no such device '" + request.value("device", std::string()) +
                         "' (name devices DOMID/VDEV, e.g. 3/xvda or 3/51712)"}});
    return;
  }
  auto answer = [reply](std::optional<std::string> error) {
    reply(error ? json{{"ok", false}, {"error", *error}} : json{{"ok", true}});
  };
  if (command == "pause") {
    vbd->pause(answer);
  } else if (command == "resize") {
    vbd->resize(answer);
  } else {
    if (request.contains("target") && !request["target"].is_string()) {
      reply({{"ok", false}, {"error", "resume: \"target\" must be a string"}});
      return;
    }
    vbd->resume(request.value("target", std::string()), answer);
  }
}

nlohmann::json Daemon::handle_command(const nlohmann::json& request) {
  using nlohmann::json;
  if (!request.is_object() || !request.contains("command") || !request["command"].is_string()) {
    return {{"ok", false}, {"error", "a request is a JSON object with a string \"command\""}};
  }
  const std::string command = request["command"];
  auto device = [&]() -> Vbd* {
    if (!request.contains("device") || !request["device"].is_string()) return nullptr;
    return find(request["device"].get<std::string>());
  };
  auto no_device = [&]() {
    return json{{"ok", false},
                {"error", "no such device '" + request.value("device", std::string()) +
                              "' (name devices DOMID/VDEV, e.g. 3/xvda or 3/51712)"}};
  };
  if (command == "list") {
    json devices = json::array();
    for (auto& [key, vbd] : vbds_) {
      json d;
      vbd->describe(d);
      devices.push_back(d);
    }
    return {{"ok", true}, {"devices", devices}};
  }
  if (command == "stats") {
    json out = json::array();
    for (auto& [key, vbd] : vbds_) {
      if (request.contains("device") && vbd.get() != device()) continue;
      json d;
      vbd->describe(d);
      d["stats"] = vbd->stats();
      json queues = json::array();
      for (auto& q : vbd->queue_stats()) queues.push_back(q);
      d["queue_stats"] = queues;
      out.push_back(d);
    }
    if (request.contains("device") && out.empty()) return no_device();
    return {{"ok", true}, {"devices", out}};
  }
  if (command == "set") {
    Vbd* vbd = device();
    if (!vbd) return no_device();
    if (!request.contains("name") || !request.contains("value")) {
      return {{"ok", false}, {"error", "set needs \"name\" and \"value\""}};
    }
    const std::string value =
        request["value"].is_string() ? request["value"].get<std::string>() : request["value"].dump();
    if (auto error = vbd->set_tunable(request["name"].get<std::string>(), value)) return {{"ok", false}, {"error", *error}};
    return {{"ok", true}};
  }
  if (command == "detach") {
    Vbd* vbd = device();
    if (!vbd) return no_device();
    vbd->detach();
    // Its directory stays (the toolstack owns it); without this the next
    // watch event on it would serve the device again.
    refused_.insert(vbd->key());
    return {{"ok", true}};
  }
  if (command == "fault") {
    Vbd* vbd = device();
    if (!vbd) return no_device();
    if (!request.contains("spec") || !request["spec"].is_string()) {
      return {{"ok", false}, {"error", "fault needs a \"spec\" (off, or rate=N[,ops=...][,seed=S][,latency=MIN[-MAX]])"}};
    }
    if (auto error = vbd->set_fault(request["spec"].get<std::string>())) return {{"ok", false}, {"error", *error}};
    return {{"ok", true}};
  }
  if (command.rfind("snapshot-", 0) == 0) return handle_snapshot_command(command, request);
  return {{"ok", false},
          {"error", "unknown command '" + command +
                        "' (list, stats, set, detach, pause, resume, resize, fault, snapshot-create, snapshot-list, "
                        "snapshot-delete)"}};
}

void Daemon::handle_snapshot_change(const std::string& command, const nlohmann::json& request,
                                    ControlServer::Reply reply) {
  using nlohmann::json;
  auto text = [&](const char* key) {
    return request.contains(key) && request[key].is_string() ? request[key].get<std::string>() : std::string();
  };
  Vbd* vbd = find(text("device"));
  if (!vbd) {
    reply({{"ok", false}, {"error", "no such device '" + text("device") + "' (name devices DOMID/VDEV, e.g. 3/xvda)"}});
    return;
  }
  if (command == "snapshot-delete") {
    vbd->snapshot_delete(text("snapshot"), request.value("delete_store", false), std::move(reply));
    return;
  }
  uint32_t cluster = storage::CowOriginStorage::kDefaultClusterSize;
  if (request.contains("cluster_size")) {
    const auto& value = request["cluster_size"];
    if (!value.is_number_integer() || value.get<int64_t>() <= 0 || value.get<int64_t>() > UINT32_MAX) {
      reply({{"ok", false}, {"error", "cluster_size must be a positive number of bytes"}});
      return;
    }
    cluster = value.get<uint32_t>();
  }
  vbd->snapshot_create(text("store"), cluster, std::move(reply));
}

nlohmann::json Daemon::handle_snapshot_command(const std::string& command, const nlohmann::json& request) {
  using nlohmann::json;
  auto text = [&](const char* key) {
    return request.contains(key) && request[key].is_string() ? request[key].get<std::string>() : std::string();
  };
  try {
    if (command == "snapshot-list") {
      json out = json::array();
      for (auto& [key, vbd] : vbds_) {
        if (request.contains("device") && vbd.get() != find(text("device"))) continue;
        for (auto& s : vbd->snapshot_list()) out.push_back(s);
      }
      return {{"ok", true}, {"snapshots", out}};
    }
  } catch (const std::exception& e) {
    return {{"ok", false}, {"error", e.what()}};
  }
  return {{"ok", false}, {"error", "unknown command '" + command + "'"}};
}

}  // namespace xbb::backend
