#include "backend/daemon/DaemonConfig.hpp"

#include <charconv>
#include <fstream>

#include "xenstore/BackendPath.hpp"

namespace xbb::backend {
namespace {

std::optional<uint64_t> number(std::string_view v, uint64_t max) {
  uint64_t out = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (v.empty() || ec != std::errc() || ptr != v.data() + v.size() || out > max) return std::nullopt;
  return out;
}

std::optional<bool> boolean(std::string_view v) {
  if (v == "1" || v == "yes" || v == "true" || v == "on") return true;
  if (v == "0" || v == "no" || v == "false" || v == "off") return false;
  return std::nullopt;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::optional<std::string> DaemonConfig::set(std::string_view name, std::string_view value) {
  const std::string n(name), v(value);
  auto bad = [&](const std::string& want) { return n + ": '" + v + "' is not " + want; };
  auto& o = options;
  if (name == "domain") {
    auto d = number(value, xs::kDomidFirstReserved - 1);
    if (!d) return bad("a domain id");
    o.only_domain = static_cast<xs::DomId>(*d);
  } else if (name == "control-socket") {
    o.control_socket = v;
  } else if (name == "backend-type") {
    if (v != "vbd" && v != "vbd3") return bad("a backend type (vbd or vbd3)");
    o.backend_type = v;
  } else if (name == "script") {
    o.script_name = v;
  } else if (name == "max-queues") {
    auto q = number(value, 64);
    if (!q || *q == 0) return bad("a queue count between 1 and 64");
    o.vbd.max_queues = static_cast<unsigned>(*q);
  } else if (name == "max-ring-page-order") {
    auto q = number(value, 5);
    if (!q) return bad("a ring page order between 0 and 5");
    o.vbd.max_ring_page_order = static_cast<unsigned>(*q);
  } else if (name == "max-indirect-segments") {
    auto q = number(value, 256);
    if (!q) return bad("a segment count between 0 and 256");
    o.vbd.max_indirect_segments = static_cast<unsigned>(*q);
  } else if (name == "persistent-grants") {
    auto b = boolean(value);
    if (!b) return bad("a boolean");
    o.vbd.persistent_grants = *b;
  } else if (name == "persistent-grants-per-queue") {
    auto q = number(value, 1u << 20);
    if (!q) return bad("a grant count between 0 and 1048576");
    o.vbd.persistent_grants_per_queue = *q;
  } else if (name == "direct-io") {
    auto b = boolean(value);
    if (!b) return bad("a boolean");
    o.vbd.direct_io = *b;
  } else if (name == "bounce-pages-per-queue") {
    auto q = number(value, 1u << 20);
    if (!q || *q < 256) return bad("a page count of at least 256");
    o.vbd.bounce_pages_per_queue = *q;
  } else if (name == "per-disk") {
    auto b = boolean(value);
    if (!b) return bad("a boolean");
    o.per_disk = *b;
  } else if (name == "fault-injection") {
    auto b = boolean(value);
    if (!b) return bad("a boolean");
    o.vbd.fault_injection = *b;
  } else if (name == "size-check-interval") {
    auto s = number(value, 3600);
    if (!s) return bad("a number of seconds between 0 (never) and 3600");
    o.size_check_interval = std::chrono::seconds(*s);
  } else if (name == "state-dir") {
    if (!v.empty() && v[0] != '/') return bad("an absolute directory");
    o.state_dir = v;
  } else if (name == "log-level") {
    auto level = spdlog::level::from_str(v);
    if (level == spdlog::level::off && v != "off") return bad("a log level (trace, debug, info, warn, error)");
    log_level = level;
  } else {
    // Everything else must be a tunable.
    return o.vbd.tunables.set(name, value);
  }
  return std::nullopt;
}

std::optional<std::string> DaemonConfig::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "cannot read config file " + path;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    std::string_view text = line;
    if (auto hash = text.find('#'); hash != std::string_view::npos) text = text.substr(0, hash);
    text = trim(text);
    if (text.empty()) continue;
    const auto eq = text.find('=');
    if (eq == std::string_view::npos) return path + ":" + std::to_string(number) + ": expected 'name = value'";
    if (auto error = set(trim(text.substr(0, eq)), trim(text.substr(eq + 1)))) {
      return path + ":" + std::to_string(number) + ": " + *error;
    }
  }
  return std::nullopt;
}

}  // namespace xbb::backend
