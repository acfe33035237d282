#include "backend/engine/Tunables.hpp"

#include <charconv>

namespace xbb::backend {
namespace {

std::optional<bool> parse_bool(std::string_view v) {
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  return std::nullopt;
}

std::optional<uint32_t> parse_u32(std::string_view v) {
  uint32_t out = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || ptr != v.data() + v.size() || v.empty()) return std::nullopt;
  return out;
}

}  // namespace

std::optional<std::string> Tunables::set(std::string_view name, std::string_view value) {
  auto bad = [&](const char* want) {
    return std::string("tunable '") + std::string(name) + "': '" + std::string(value) + "' is not " + want;
  };
  if (name == "no_coalesce_reqs" || name == "disable_flush" || name == "ordered_responses") {
    auto b = parse_bool(value);
    if (!b) return bad("a boolean (0/1)");
    (name == "no_coalesce_reqs" ? no_coalesce_reqs : name == "disable_flush" ? disable_flush : ordered_responses) = *b;
    return std::nullopt;
  }
  if (name == "flush_interval") {
    auto n = parse_u32(value);
    if (!n) return bad("an unsigned number");
    flush_interval = *n;
    return std::nullopt;
  }
  if (name == "max_list_segments") {
    auto n = parse_u32(value);
    if (!n || *n < 1 || *n > 4096) return bad("a number of segments between 1 and 4096");
    max_list_segments = *n;
    return std::nullopt;
  }
  if (name == "notify_batch") {
    auto n = parse_u32(value);
    if (!n || *n > 1024) return bad("a number of responses between 0 and 1024");
    notify_batch = *n;
    return std::nullopt;
  }
  if (name == "notify_delay_us") {
    auto n = parse_u32(value);
    if (!n || *n > 100'000) return bad("a number of microseconds between 0 and 100000");
    notify_delay_us = *n;
    return std::nullopt;
  }
  return "unknown tunable '" + std::string(name) +
         "' (known: no_coalesce_reqs, disable_flush, flush_interval, max_list_segments, notify_batch, "
         "notify_delay_us, ordered_responses)";
}

std::vector<std::pair<std::string, std::string>> Tunables::list() const {
  return {{"no_coalesce_reqs", no_coalesce_reqs ? "1" : "0"},
          {"disable_flush", disable_flush ? "1" : "0"},
          {"flush_interval", std::to_string(flush_interval)},
          {"max_list_segments", std::to_string(max_list_segments)},
          {"notify_batch", std::to_string(notify_batch)},
          {"notify_delay_us", std::to_string(notify_delay_us)},
          {"ordered_responses", ordered_responses ? "1" : "0"}};
}

}  // namespace xbb::backend
