// Parsing of backend device paths and the frontend-path security check.
// Both sides of a vbd are named by numbers the toolstack wrote; a backend
// must accept only the exact canonical spelling so that two strings can
// never name the same device (e.g. "03" vs "3") and a guest cannot point the
// backend at another domain's nodes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "xenstore/XenStore.hpp"

namespace xbb::xs {

// First reserved domain id (DOMID_FIRST_RESERVED in xen/xen.h): ids at or
// above it (DOMID_SELF, DOMID_IO, ...) never name a real frontend.
inline constexpr uint32_t kDomidFirstReserved = 0x7FF0;

struct BackendPath {
  std::string type;        // "vbd", "vbd3", ...
  DomId frontend_domid = 0;
  uint32_t devid = 0;
  std::string path;        // the device directory exactly as given
  bool operator==(const BackendPath&) const = default;
};

// Accepts exactly `backend/<type>/<domid>/<devid>` or
// `/local/domain/<backend-domid>/backend/<type>/<domid>/<devid>`.
// Numbers are canonical decimal (no sign, no leading zero, no overflow);
// domids must be below kDomidFirstReserved; type is [a-z0-9_-]+.
std::optional<BackendPath> parse_backend_path(std::string_view path);

// For watch events below a device directory ("backend/vbd/3/51712/state"):
// the device plus the remainder after the device directory ("state", or ""
// for the directory itself). nullopt if the path is not inside a device.
struct BackendEvent {
  BackendPath device;
  std::string subpath;
};
std::optional<BackendEvent> parse_backend_event_path(std::string_view path);

// The frontend directory a toolstack writes for this device:
// /local/domain/<domid>/device/<frontend type>/<devid>. vbd3 (Xen >= 4.19's
// tap backend) still has a `device/vbd` frontend, so "vbd3" maps to "vbd".
std::string expected_frontend_path(DomId domid, uint32_t devid, std::string_view backend_type);

// True only if `frontend` is exactly expected_frontend_path(...).
bool is_expected_frontend(std::string_view frontend, DomId domid, uint32_t devid,
                          std::string_view backend_type);

// Canonical decimal parser used for path components (exposed for reuse and
// tests): digits only, no leading zero unless the number is "0", <= max.
std::optional<uint64_t> parse_canonical_uint(std::string_view text, uint64_t max);

}  // namespace xbb::xs
