#include "storage/nbd/NbdTarget.hpp"

#include <charconv>
#include <cstdint>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "storage/Storage.hpp"

namespace xbb::storage {
namespace {

constexpr const char* kSyntax = "nbd:URI[#reconnect=DURATION|off&timeout=DURATION&multi-conn=off]";

std::optional<std::chrono::milliseconds> parse_duration(const std::string& text) {
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [rest, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || rest == text.data()) return std::nullopt;
  const std::string unit(rest, end);
  uint64_t scale = 0;
  if (unit.empty() || unit == "s") scale = 1000;
  else if (unit == "ms") scale = 1;
  else if (unit == "m") scale = 60'000;
  else return std::nullopt;
  constexpr uint64_t kMaxMs = 24ull * 3600 * 1000;  // a day: anything longer is a typo
  if (value > kMaxMs / scale) return std::nullopt;
  return std::chrono::milliseconds(value * scale);
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t at = text.find(separator, start);
    parts.push_back(text.substr(start, at - start));
    if (at == std::string::npos) return parts;
    start = at + 1;
  }
}

std::string format_duration(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return fmt::format("{}s", d.count() / 1000);
  return fmt::format("{}ms", d.count());
}

}  // namespace

NbdTarget NbdTarget::parse(const std::string& argument) {
  NbdTarget target;
  const size_t hash = argument.find('#');
  target.uri = argument.substr(0, hash);
  if (target.uri.empty())
    throw StorageError(fmt::format("nbd: no URI given (expected {}, e.g. nbd:nbd+unix:///?socket=/run/nbd.sock)", kSyntax));
  if (hash == std::string::npos) return target;

  for (const std::string& setting : split(argument.substr(hash + 1), '&')) {
    const size_t eq = setting.find('=');
    const std::string key = setting.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : setting.substr(eq + 1);
    if (eq == std::string::npos || value.empty())
      throw StorageError(fmt::format("nbd: setting '{}' has no value (expected {})", setting, kSyntax));
    if (key == "reconnect") {
      if (value == "off") {
        target.reconnect_interval = std::chrono::milliseconds(0);
      } else if (auto d = parse_duration(value)) {
        target.reconnect_interval = *d;
      } else {
        throw StorageError(fmt::format("nbd: reconnect '{}' is not a duration or 'off' (e.g. 500ms, 5s, 1m)", value));
      }
    } else if (key == "timeout") {
      auto d = parse_duration(value);
      if (!d) throw StorageError(fmt::format("nbd: timeout '{}' is not a duration (e.g. 500ms, 30s, 2m)", value));
      if (d->count() == 0) throw StorageError("nbd: timeout must be at least 1ms (requests must never hang)");
      target.request_timeout = *d;
    } else if (key == "multi-conn") {
      if (value == "off") target.allow_multi_conn = false;
      else if (value == "on") target.allow_multi_conn = true;
      else throw StorageError(fmt::format("nbd: multi-conn '{}' must be 'on' or 'off'", value));
    } else {
      throw StorageError(fmt::format("nbd: unknown setting '{}' (known: reconnect, timeout, multi-conn; syntax {})", key, kSyntax));
    }
  }
  return target;
}

std::string NbdTarget::to_string() const {
  return fmt::format("nbd:{}#reconnect={}&timeout={}{}", uri,
                     reconnect_interval.count() == 0 ? "off" : format_duration(reconnect_interval),
                     format_duration(request_timeout), allow_multi_conn ? "" : "&multi-conn=off");
}

}  // namespace xbb::storage
