// What the frontend asks for at connect time: how many queues, the ring
// pages and event channel of each, its ABI and whether it wants persistent
// grants. Everything here was written by the guest, so every key is checked
// against what we advertised and every failure names the key.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "ring/ports/GuestMemory.hpp"
#include "ring/protocol/Abi.hpp"
#include "xenstore/XenStore.hpp"

namespace xbb::backend {

struct FrontendLimits {
  unsigned max_ring_page_order = 5;
  unsigned max_queues = 1;
};

struct QueueRing {
  std::vector<ports::GrantRef> ring_refs;
  ports::EvtchnPort event_channel = 0;
};

struct FrontendRings {
  ring::Abi abi = ring::Abi::Native;
  unsigned ring_page_order = 0;
  std::vector<QueueRing> queues;
  bool wants_persistent = false;
};

// Returns the rings, or a message saying which key is missing or wrong.
std::variant<FrontendRings, std::string> read_frontend_rings(xs::XenStore& xs, const std::string& frontend,
                                                             const FrontendLimits& limits);

}  // namespace xbb::backend
