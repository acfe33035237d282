#include "backend/daemon/DeviceDiscovery.hpp"

#include <spdlog/spdlog.h>

#include "xenstore/Vdev.hpp"
#include "xenstore/XenbusState.hpp"
#include "xenstore/XenstoreKeys.hpp"

namespace xbb::backend {

std::string backend_base_path(xs::DomId backend_domid, const std::string& backend_type) {
  return "/local/domain/" + std::to_string(backend_domid) + "/backend/" + backend_type;
}

void drain_watch_events(xs::XenStore& xs,
                        const std::function<void(const std::string& path, const std::string& token)>& on_watch,
                        size_t max_events) {
  for (size_t handled = 0; handled < max_events; ++handled) {
    auto event = xs.read_watch();
    if (!event) return;
    try {
      on_watch(event->path, event->token);
    } catch (const std::exception& e) {
      spdlog::error("xbbd: handling a change of {}: {}", event->path, e.what());
    }
  }
}

void for_each_backend_device(xs::XenStore& xs, const std::string& base,
                             const std::function<void(const xs::BackendPath&)>& fn) {
  auto domains = xs.directory(xs::kNoTransaction, base);
  if (!domains) return;
  for (const auto& dom : *domains) {
    auto devices = xs.directory(xs::kNoTransaction, base + "/" + dom);
    if (!devices) continue;
    for (const auto& dev : *devices) {
      if (auto path = xs::parse_backend_path(base + "/" + dom + "/" + dev)) fn(*path);
    }
  }
}

std::optional<xs::BackendEvent> backend_device_event(const std::string& path) {
  if (auto event = xs::parse_backend_event_path(path)) return event;
  if (auto device = xs::parse_backend_path(path)) return xs::BackendEvent{*device, ""};
  return std::nullopt;
}

bool runs_script(xs::XenStore& xs, const xs::BackendPath& path, const std::string& script_name) {
  if (script_name.empty()) return true;
  const auto script = xs.read(xs::kNoTransaction, path.path + "/script");
  if (!script) return false;
  const auto slash = script->rfind('/');
  return script->substr(slash == std::string::npos ? 0 : slash + 1) == script_name;
}

std::optional<std::string> device_key_of(const std::string& name) {
  const auto slash = name.find('/');
  if (slash == std::string::npos || slash == 0) return std::nullopt;
  const std::string domain = name.substr(0, slash);
  if (domain.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  auto devid = xs::parse_vdev(name.substr(slash + 1));
  if (!devid) return std::nullopt;
  return domain + "/" + std::to_string(*devid);
}

void LetGoDevices::remember(xs::XenStore& xs, const std::string& key, const xs::BackendPath& path) {
  if (xs.directory(xs::kNoTransaction, path.path)) keys_.insert(key);
}

bool LetGoDevices::holds(xs::XenStore& xs, const std::string& key, const xs::BackendPath& path) {
  if (!keys_.count(key)) return false;
  const bool exists = xs.directory(xs::kNoTransaction, path.path).has_value();
  const bool created_anew =
      exists && xs::read_state(xs, xs::kNoTransaction, path.path) == xs::XenbusState::Initialising &&
      xs::read_bool(xs, xs::kNoTransaction, path.path + "/online").value_or(false);
  if (exists && !created_anew) return true;
  keys_.erase(key);
  return false;
}

}  // namespace xbb::backend
