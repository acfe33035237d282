#include "backend/daemon/Daemon.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "backend/daemon/ControlServer.hpp"
#include "backend/daemon/DeviceDiscovery.hpp"
#include "backend/engine/FastClock.hpp"
#include "xenstore/Vdev.hpp"

namespace xbb::backend {
namespace {

constexpr uint64_t kTagWakeup = 1;
constexpr uint64_t kTagXenstore = 2;
constexpr uint64_t kTagControlBase = EpollSet::kControlTagBase;  // + fd
const std::string kBackendsToken = "xbbd:backends";
const std::string kReleaseToken = "xbbd:release-domain";
const std::string kFrontendTokenPrefix = "xbbd:frontend:";

}  // namespace

Daemon::Daemon(xs::XenStore& xs, ports::Hypervisor& hypervisor, DaemonOptions options,
               std::function<std::unique_ptr<storage::Storage>(const std::string&, bool)> open_storage)
    : xs_(xs),
      hypervisor_(hypervisor),
      options_(std::move(options)),
      snapshots_(options_.state_dir.empty() ? "" : options_.state_dir + "/snapshots.json"),
      host_{xs, hypervisor, options_.vbd, nullptr, std::move(open_storage), &snapshots_} {
  if (auto error = snapshots_.load()) spdlog::error("xbbd: {}; no snapshot will be re-attached", *error);
  host_.post = [this](const std::string& key, std::function<void(Vbd&)> fn) {
    post([this, key, fn = std::move(fn)] {
      auto it = vbds_.find(key);
      if (it != vbds_.end()) fn(*it->second);
    });
  };
  wakeup_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wakeup_) throw std::system_error(errno, std::generic_category(), "daemon: eventfd");
  epoll_.add(wakeup_.get(), kTagWakeup);
  epoll_.add(xs_.watch_fd(), kTagXenstore);
  if (!options_.control_socket.empty()) {
    control_ = std::make_unique<ControlServer>(options_.control_socket,
                                               [this](const nlohmann::json& request) { return handle_command(request); });
    epoll_.add(control_->listen_fd(), kTagControlBase + static_cast<uint64_t>(control_->listen_fd()));
  }
}

Daemon::~Daemon() {
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
  uint64_t one = 1;
  [[maybe_unused]] auto rc = ::write(wakeup_.get(), &one, sizeof one);
}

void Daemon::post(std::function<void()> fn) {
  {
    std::lock_guard lock(posted_mutex_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  [[maybe_unused]] auto rc = ::write(wakeup_.get(), &one, sizeof one);
}

void Daemon::run_posted() {
  uint64_t count;
  while (::read(wakeup_.get(), &count, sizeof count) > 0) {
  }
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(posted_mutex_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

void Daemon::set_default_tunables(const Tunables& tunables) {
  post([this, tunables] {
    options_.vbd.tunables = tunables;
    for (auto& [key, vbd] : vbds_) {
      for (auto& [name, value] : tunables.list()) vbd->set_tunable(name, value);
    }
  });
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
  if (released_.holds(xs_, key, path)) return;
  if (!wanted(path)) return;
  auto vbd = std::make_unique<Vbd>(host_, path);
  if (!vbd->start()) {
    if (vbd->released()) refused_.insert(key);
    if (vbd->released() && options_.only_domain) refused_single_ = true;
    return;  // incomplete directory: the next watch event retries
  }
  try {
    xs_.watch(vbd->frontend_path(), kFrontendTokenPrefix + key);
  } catch (const std::exception& e) {
    spdlog::error("{}: cannot watch {}: {}", key, vbd->frontend_path(), e.what());
  }
  served_any_ = true;
  vbds_.emplace(key, std::move(vbd));
}

void Daemon::scan_backends() {
  for_each_backend_device(xs_, base_path(), [this](const xs::BackendPath& path) { consider_device(path); });
}

void Daemon::on_watch(const std::string& path, const std::string& token) {
  if (token == kBackendsToken) {
    if (path == base_path()) {
      scan_backends();
      return;
    }
    auto event = backend_device_event(path);
    if (!event) {
      // A new domain directory (backend/vbd/D) or something we do not know.
      scan_backends();
      return;
    }
    auto it = vbds_.find(Vbd::key_of(event->device));
    if (it == vbds_.end()) {
      consider_device(event->device);
    } else if (event->subpath.empty() || event->subpath == "online" || event->subpath == "state") {
      it->second->on_backend_changed();
    }
  } else if (token == kReleaseToken) {
    for (auto& [key, vbd] : vbds_) {
      if (!hypervisor_.domain_exists(vbd->domid())) vbd->on_domain_gone();
    }
  } else if (token.rfind(kFrontendTokenPrefix, 0) == 0) {
    auto it = vbds_.find(token.substr(kFrontendTokenPrefix.size()));
    if (it != vbds_.end()) it->second->on_frontend_changed();
  }
}

void Daemon::drop_released() {
  for (auto it = vbds_.begin(); it != vbds_.end();) {
    if (it->second->released()) {
      try {
        xs_.unwatch(it->second->frontend_path(), kFrontendTokenPrefix + it->first);
        released_.remember(xs_, it->first, it->second->path());
      } catch (const std::exception&) {
      }
      it = vbds_.erase(it);
    } else {
      ++it;
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
  if (on_ready_) on_ready_();

  const auto watch_fd = epoll_.control_watcher();
  std::array<epoll_event, 16> events;
  for (;;) {
    if (stop_requested_.load() && !stopping_) {
      stopping_ = true;
      spdlog::info("xbbd: stopping: draining {} device(s)", vbds_.size());
      for (auto& [key, vbd] : vbds_) vbd->detach_for_shutdown();
    }
    drop_released();
    if (stopping_ && vbds_.empty()) return 0;
    if (options_.only_domain && ((served_any_ && vbds_.empty()) || refused_single_)) return refused_single_ ? 1 : 0;

    const int n = epoll_.wait(events, -1);
    if (n < 0) {
      spdlog::error("xbbd: epoll_wait: {}", std::strerror(errno));
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kTagWakeup) {
        run_posted();
      } else if (tag == kTagXenstore) {
        drain_watch_events(xs_, [this](const std::string& path, const std::string& token) { on_watch(path, token); });
      } else if (control_) {
        control_->on_ready(static_cast<int>(tag - kTagControlBase), watch_fd);
      }
    }
  }
}

size_t Daemon::device_count() const {
  size_t n = 0;
  for (auto& [key, vbd] : vbds_) n += vbd->released() ? 0 : 1;
  return n;
}

Vbd* Daemon::find(const std::string& name) {
  if (auto it = vbds_.find(name); it != vbds_.end()) return it->second.get();
  // "3/xvda" as well as "3/51712"
  auto key = device_key_of(name);
  if (!key) return nullptr;
  auto it = vbds_.find(*key);
  return it == vbds_.end() ? nullptr : it->second.get();
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
                        "' (list, stats, set, detach, fault, snapshot-create, snapshot-list, snapshot-delete)"}};
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
    Vbd* vbd = find(text("device"));
    if (!vbd) {
      return {{"ok", false}, {"error", "no such device '" + text("device") + "' (name devices DOMID/VDEV, e.g. 3/xvda)"}};
    }
    if (command == "snapshot-create") {
      uint32_t cluster = storage::CowOriginStorage::kDefaultClusterSize;
      if (request.contains("cluster_size")) {
        const auto& value = request["cluster_size"];
        if (!value.is_number_integer() || value.get<int64_t>() <= 0 || value.get<int64_t>() > UINT32_MAX) {
          return {{"ok", false}, {"error", "cluster_size must be a positive number of bytes"}};
        }
        cluster = value.get<uint32_t>();
      }
      return {{"ok", true}, {"snapshot", vbd->snapshot_create(text("store"), cluster)}};
    }
    if (command == "snapshot-delete") {
      vbd->snapshot_delete(text("snapshot"), request.value("delete_store", false));
      return {{"ok", true}};
    }
  } catch (const std::exception& e) {
    return {{"ok", false}, {"error", e.what()}};
  }
  return {{"ok", false}, {"error", "unknown command '" + command + "'"}};
}

}  // namespace xbb::backend
