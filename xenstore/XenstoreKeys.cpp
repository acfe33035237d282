#include "xenstore/XenstoreKeys.hpp"

#include <spdlog/spdlog.h>

namespace xbb::xs {

std::optional<uint64_t> parse_uint(std::string_view text, uint64_t max) {
  if (text.empty()) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    // value * 10 + digit > max, written so that nothing can wrap around.
    if (digit > max || value > (max - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

std::optional<bool> parse_bool(std::string_view text) {
  auto value = parse_uint(text);
  if (!value) return std::nullopt;
  return *value != 0;
}

std::optional<uint64_t> read_uint(XenStore& xs, TxId tx, const std::string& path, uint64_t max) {
  auto text = xs.read(tx, path);
  if (!text) return std::nullopt;
  auto value = parse_uint(*text, max);
  if (!value) {
    spdlog::warn("xenstore: {} = '{}' is not an unsigned number <= {}", path,
                 printable_excerpt(*text), max);
  }
  return value;
}

std::optional<bool> read_bool(XenStore& xs, TxId tx, const std::string& path) {
  auto text = xs.read(tx, path);
  if (!text) return std::nullopt;
  auto value = parse_bool(*text);
  if (!value) {
    spdlog::warn("xenstore: {} = '{}' is not a boolean (0 or a number)", path,
                 printable_excerpt(*text));
  }
  return value;
}

std::string printable_excerpt(std::string_view text, size_t max_len) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : text.substr(0, max_len)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\') {
      out += c;
    } else {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  if (text.size() > max_len) out += "...";
  return out;
}

}  // namespace xbb::xs
