#include "backend/engine/FaultSpec.hpp"

#include <charconv>
#include <optional>

#include <fmt/format.h>

namespace xbb::backend {
namespace {

std::optional<uint64_t> number(std::string_view v) {
  uint64_t out = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (v.empty() || ec != std::errc() || ptr != v.data() + v.size()) return std::nullopt;
  return out;
}

std::optional<uint32_t> microseconds(std::string_view v) {
  uint64_t scale = 1;
  if (v.ends_with("ms")) {
    scale = 1000;
    v.remove_suffix(2);
  } else if (v.ends_with("us")) {
    v.remove_suffix(2);
  }
  auto n = number(v);
  if (!n || *n * scale > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(*n * scale);
}

}  // namespace

std::variant<storage::FaultSettings, std::string> parse_fault_spec(std::string_view text) {
  storage::FaultSettings s;
  if (text == "off") return s;
  bool any = false;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const std::string_view part = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    const auto eq = part.find('=');
    if (eq == std::string_view::npos) return "fault: '" + std::string(part) + "' is not name=value";
    const auto name = part.substr(0, eq), value = part.substr(eq + 1);
    any = true;
    if (name == "rate") {
      auto n = number(value);
      if (!n || *n > storage::FaultSettings::kPerMax) return "fault: rate must be 0..10000 (failures per 10000 requests)";
      s.fail_per_10000 = static_cast<uint32_t>(*n);
    } else if (name == "seed") {
      auto n = number(value);
      if (!n) return "fault: seed must be a number";
      s.seed = *n;
    } else if (name == "ops") {
      s.op_mask = 0;
      std::string_view ops = value;
      while (!ops.empty()) {
        const auto plus = ops.find('+');
        const auto op = ops.substr(0, plus);
        ops = plus == std::string_view::npos ? std::string_view{} : ops.substr(plus + 1);
        if (op == "read") s.op_mask |= storage::FaultSettings::bit(storage::IoOp::Read);
        else if (op == "write") s.op_mask |= storage::FaultSettings::bit(storage::IoOp::Write);
        else if (op == "flush") s.op_mask |= storage::FaultSettings::bit(storage::IoOp::Flush);
        else if (op == "discard") {
          s.op_mask |= storage::FaultSettings::bit(storage::IoOp::Discard) |
                       storage::FaultSettings::bit(storage::IoOp::SecureDiscard);
        } else {
          return "fault: unknown operation '" + std::string(op) + "' (read, write, flush, discard)";
        }
      }
      if (s.op_mask == 0) return "fault: ops needs at least one operation";
    } else if (name == "latency") {
      const auto dash = value.find('-');
      auto lo = microseconds(value.substr(0, dash));
      auto hi = dash == std::string_view::npos ? lo : microseconds(value.substr(dash + 1));
      if (!lo || !hi || *hi < *lo) return "fault: latency must be MIN or MIN-MAX microseconds (us/ms suffix allowed)";
      s.latency_min_us = *lo;
      s.latency_max_us = *hi;
    } else {
      return "fault: unknown setting '" + std::string(name) + "' (rate, ops, seed, latency)";
    }
  }
  if (!any) return std::string("fault: give 'off' or rate=N[,ops=...][,seed=S][,latency=MIN[-MAX]]");
  return s;
}

std::string to_string(const storage::FaultSettings& s) {
  if (s.fail_per_10000 == 0 && s.latency_max_us == 0) return "off";
  std::string ops;
  auto add = [&](storage::IoOp op, const char* name) {
    if (!s.applies_to(op)) return;
    if (!ops.empty()) ops += '+';
    ops += name;
  };
  add(storage::IoOp::Read, "read");
  add(storage::IoOp::Write, "write");
  add(storage::IoOp::Flush, "flush");
  add(storage::IoOp::Discard, "discard");
  return fmt::format("rate={},ops={},seed={},latency={}-{}us", s.fail_per_10000, ops, s.seed, s.latency_min_us,
                     s.latency_max_us);
}

}  // namespace xbb::backend
