// How xbbd finds the devices it serves in the backend tree, shared by daemon
// mode (Daemon: one Vbd per device) and per-disk mode (Supervisor: one
// process per device), so both serve exactly the same devices.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>

#include "xenstore/BackendPath.hpp"
#include "xenstore/XenStore.hpp"

namespace xbb::backend {

// /local/domain/<backend domid>/backend/<type>: the tree both modes watch.
std::string backend_base_path(xs::DomId backend_domid, const std::string& backend_type);

// Hands pending watch events to `on_watch`, at most `max_events` of them (the
// rest stay queued); one that throws is logged and the rest still handled.
void drain_watch_events(xs::XenStore& xs,
                        const std::function<void(const std::string& path, const std::string& token)>& on_watch,
                        size_t max_events = SIZE_MAX);

// Calls `fn` for every device directory under `base`.
void for_each_backend_device(xs::XenStore& xs, const std::string& base,
                             const std::function<void(const xs::BackendPath&)>& fn);

// The device a watch event below `base` is about ("" subpath for the device
// directory itself); nothing for `base`, a domain directory or a foreign path.
std::optional<xs::BackendEvent> backend_device_event(const std::string& path);

// True when the device's hotplug `script` ends in `script_name` ("" = every device).
bool runs_script(xs::XenStore& xs, const xs::BackendPath& path, const std::string& script_name);

// Devices already served and let go (released, or their process exited)
// must not be served again while the toolstack tears their directory down:
// each watch event of that teardown would otherwise start a new server that
// writes into a directory being removed. A key is remembered while its
// directory exists and forgotten when the directory is gone or the toolstack
// has created the device anew (state Initialising and online, as libxl writes
// a new device; a let-go device shows Closing or Closed). The state test
// closes the race of a directory removed and re-created between two events.
class LetGoDevices {
 public:
  // Remembers `key` if its directory still exists.
  void remember(xs::XenStore& xs, const std::string& key, const xs::BackendPath& path);
  // True while `key` is remembered and its directory is the old one.
  bool holds(xs::XenStore& xs, const std::string& key, const xs::BackendPath& path);

 private:
  std::set<std::string> keys_;
};

// "3/xvda" or "3/51712" -> the device key "3/51712"; nothing when it does not name a device.
std::optional<std::string> device_key_of(const std::string& name);

}  // namespace xbb::backend
