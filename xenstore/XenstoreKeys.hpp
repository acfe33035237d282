// Strict parsing of the scalar keys that frontends and the toolstack write
// (ring-ref, event-channel, feature-*, discard-enable, ...). Values may come
// from an untrusted guest, so anything that is not exactly a decimal number
// is rejected rather than half-parsed the way sscanf("%u") would.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "xenstore/XenStore.hpp"

namespace xbb::xs {

// Decimal digits only: no sign, no whitespace, no hex, not empty, at most
// `max`. Leading zeros are accepted for values ("007" is 7); paths use the
// stricter canonical parser in BackendPath.
std::optional<uint64_t> parse_uint(std::string_view text,
                                   uint64_t max = std::numeric_limits<uint64_t>::max());

// Booleans as xenbus drivers write them: a decimal number, 0 is false and
// any other value true (Linux reads feature flags with "%u" and tests != 0).
std::optional<bool> parse_bool(std::string_view text);

// Read helpers: nullopt when the node is missing or holds garbage (garbage is
// logged with the path).
std::optional<uint64_t> read_uint(XenStore& xs, TxId tx, const std::string& path,
                                  uint64_t max = std::numeric_limits<uint64_t>::max());
std::optional<bool> read_bool(XenStore& xs, TxId tx, const std::string& path);

// A short, printable rendering of an untrusted value for log messages.
std::string printable_excerpt(std::string_view text, size_t max_len = 64);

}  // namespace xbb::xs
