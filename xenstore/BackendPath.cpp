#include "xenstore/BackendPath.hpp"

#include <vector>

#include "xenstore/XenstoreKeys.hpp"

namespace xbb::xs {
namespace {

std::vector<std::string_view> split(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t slash = path.find('/', start);
    parts.push_back(path.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return parts;
}

bool valid_type(std::string_view type) {
  if (type.empty() || type.size() > 32) return false;
  for (char c : type) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::optional<DomId> parse_domid(std::string_view text) {
  auto v = parse_canonical_uint(text, kDomidFirstReserved - 1);
  if (!v) return std::nullopt;
  return static_cast<DomId>(*v);
}

// Parses the components of a device directory; `rest` receives anything
// after the four/eight device components.
std::optional<BackendPath> parse_parts(std::string_view path, size_t* consumed_parts,
                                       std::vector<std::string_view>* parts_out) {
  auto parts = split(path);
  size_t i = 0;
  if (!parts.empty() && parts[0].empty()) {
    // Absolute form: "", "local", "domain", <backend domid>, "backend", ...
    if (parts.size() < 5 || parts[1] != "local" || parts[2] != "domain" ||
        !parse_domid(parts[3]) || parts[4] != "backend") {
      return std::nullopt;
    }
    i = 5;
  } else {
    if (parts.empty() || parts[0] != "backend") return std::nullopt;
    i = 1;
  }
  if (parts.size() < i + 3) return std::nullopt;
  if (!valid_type(parts[i])) return std::nullopt;
  auto domid = parse_domid(parts[i + 1]);
  auto devid = parse_canonical_uint(parts[i + 2], UINT32_MAX);
  if (!domid || !devid) return std::nullopt;
  BackendPath bp;
  bp.type = std::string(parts[i]);
  bp.frontend_domid = *domid;
  bp.devid = static_cast<uint32_t>(*devid);
  *consumed_parts = i + 3;
  *parts_out = std::move(parts);
  return bp;
}

size_t prefix_length(const std::vector<std::string_view>& parts, size_t n) {
  size_t len = 0;
  for (size_t k = 0; k < n; ++k) len += parts[k].size() + (k ? 1 : 0);
  return len;
}

}  // namespace

std::optional<uint64_t> parse_canonical_uint(std::string_view text, uint64_t max) {
  if (text.size() > 1 && text[0] == '0') return std::nullopt;
  return parse_uint(text, max);
}

std::optional<BackendPath> parse_backend_path(std::string_view path) {
  size_t used = 0;
  std::vector<std::string_view> parts;
  auto bp = parse_parts(path, &used, &parts);
  if (!bp || used != parts.size()) return std::nullopt;
  bp->path = std::string(path);
  return bp;
}

std::optional<BackendEvent> parse_backend_event_path(std::string_view path) {
  size_t used = 0;
  std::vector<std::string_view> parts;
  auto bp = parse_parts(path, &used, &parts);
  if (!bp) return std::nullopt;
  const size_t dir_len = prefix_length(parts, used);
  bp->path = std::string(path.substr(0, dir_len));
  std::string_view rest = path.substr(dir_len);
  if (!rest.empty()) {
    rest.remove_prefix(1);  // the '/' after the device directory
    // Empty components ("x//y", trailing '/') are not valid xenstore paths.
    for (size_t k = used; k < parts.size(); ++k) {
      if (parts[k].empty()) return std::nullopt;
    }
  }
  return BackendEvent{std::move(*bp), std::string(rest)};
}

std::string expected_frontend_path(DomId domid, uint32_t devid, std::string_view backend_type) {
  const std::string_view frontend_type = backend_type == "vbd3" ? std::string_view("vbd") : backend_type;
  return "/local/domain/" + std::to_string(domid) + "/device/" + std::string(frontend_type) + "/" +
         std::to_string(devid);
}

bool is_expected_frontend(std::string_view frontend, DomId domid, uint32_t devid,
                          std::string_view backend_type) {
  return frontend == expected_frontend_path(domid, devid, backend_type);
}

}  // namespace xbb::xs
