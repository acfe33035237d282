#include "xenstore/XenbusState.hpp"

#include <spdlog/spdlog.h>

#include "xenstore/XenstoreKeys.hpp"

namespace xbb::xs {

std::string to_string(XenbusState state) {
  switch (state) {
    case XenbusState::Unknown: return "Unknown";
    case XenbusState::Initialising: return "Initialising";
    case XenbusState::InitWait: return "InitWait";
    case XenbusState::Initialised: return "Initialised";
    case XenbusState::Connected: return "Connected";
    case XenbusState::Closing: return "Closing";
    case XenbusState::Closed: return "Closed";
    case XenbusState::Reconfiguring: return "Reconfiguring";
    case XenbusState::Reconfigured: return "Reconfigured";
  }
  return "Invalid(" + std::to_string(static_cast<int>(state)) + ")";
}

std::optional<XenbusState> parse_state(std::string_view text) {
  auto value = parse_uint(text, static_cast<uint64_t>(XenbusState::Reconfigured));
  if (!value) return std::nullopt;
  return static_cast<XenbusState>(*value);
}

std::optional<XenbusState> read_state(XenStore& xs, TxId tx, const std::string& device_dir) {
  const std::string path = device_dir + "/state";
  auto text = xs.read(tx, path);
  if (!text) return std::nullopt;
  auto state = parse_state(*text);
  if (!state) {
    // Bounded, escaped excerpt: the value may be guest-controlled and huge.
    spdlog::warn("xenstore: {} holds an invalid xenbus state '{}'", path,
                 printable_excerpt(*text));
  }
  return state;
}

void write_state(XenStore& xs, TxId tx, const std::string& device_dir, XenbusState state) {
  xs.write(tx, device_dir + "/state", std::to_string(static_cast<int>(state)));
}

}  // namespace xbb::xs
