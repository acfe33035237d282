// The xenbus device state machine values (xen/io/xenbus.h) and the helpers
// that read and write a device's `state` node. The numbers are ABI: every
// frontend and toolstack compares them as decimal strings in xenstore.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "xenstore/XenStore.hpp"

namespace xbb::xs {

enum class XenbusState : int {
  Unknown = 0,
  Initialising = 1,
  InitWait = 2,
  Initialised = 3,
  Connected = 4,
  Closing = 5,
  Closed = 6,
  Reconfiguring = 7,
  Reconfigured = 8,
};

// "Connected", "Closing", ...; "Invalid(<n>)" for a value outside the enum.
std::string to_string(XenbusState state);

// Parses the decimal text of a state node; nullopt for anything that is not
// exactly a number in 0..8 (empty, signs, spaces, garbage, overflow).
std::optional<XenbusState> parse_state(std::string_view text);

// Reads `<device_dir>/state`. nullopt when the node is missing or holds
// something that is not a valid state (the latter is logged: it comes from a
// guest or a confused toolstack and must never crash us).
std::optional<XenbusState> read_state(XenStore& xs, TxId tx, const std::string& device_dir);

// Writes `<device_dir>/state` as the decimal number xenbus expects.
void write_state(XenStore& xs, TxId tx, const std::string& device_dir, XenbusState state);

}  // namespace xbb::xs
