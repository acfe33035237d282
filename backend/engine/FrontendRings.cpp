#include "backend/engine/FrontendRings.hpp"

#include "xenstore/XenstoreKeys.hpp"

namespace xbb::backend {
namespace {

using Result = std::variant<FrontendRings, std::string>;

// Reads the ring refs and event channel under `dir` (the frontend directory
// or its queue-K subdirectory).
std::optional<std::string> read_queue(xs::XenStore& xs, const std::string& dir, unsigned order, QueueRing& out) {
  const unsigned pages = 1u << order;
  out.ring_refs.clear();
  if (pages == 1 && xs.read(xs::kNoTransaction, dir + "/ring-ref")) {
    auto ref = xs::read_uint(xs, xs::kNoTransaction, dir + "/ring-ref", UINT32_MAX);
    if (!ref) return dir + "/ring-ref is not a grant reference";
    out.ring_refs.push_back(static_cast<ports::GrantRef>(*ref));
  } else {
    for (unsigned i = 0; i < pages; ++i) {
      const std::string key = dir + "/ring-ref" + std::to_string(i);
      auto ref = xs::read_uint(xs, xs::kNoTransaction, key, UINT32_MAX);
      if (!ref) return key + " is missing or not a grant reference";
      out.ring_refs.push_back(static_cast<ports::GrantRef>(*ref));
    }
  }
  auto port = xs::read_uint(xs, xs::kNoTransaction, dir + "/event-channel", UINT32_MAX);
  if (!port) return dir + "/event-channel is missing or not a port number";
  out.event_channel = static_cast<ports::EvtchnPort>(*port);
  return std::nullopt;
}

}  // namespace

Result read_frontend_rings(xs::XenStore& xs, const std::string& frontend, const FrontendLimits& limits) {
  FrontendRings rings;

  auto protocol = xs.read(xs::kNoTransaction, frontend + "/protocol");
  auto abi = ring::parse_protocol(protocol.value_or(""));
  if (!abi) return "unsupported protocol '" + xs::printable_excerpt(protocol.value_or("")) + "'";
  rings.abi = *abi;

  if (xs.read(xs::kNoTransaction, frontend + "/ring-page-order")) {
    auto order = xs::read_uint(xs, xs::kNoTransaction, frontend + "/ring-page-order");
    if (!order || *order > limits.max_ring_page_order) {
      return "ring-page-order must be a number no larger than " + std::to_string(limits.max_ring_page_order);
    }
    rings.ring_page_order = static_cast<unsigned>(*order);
  }

  unsigned queues = 1;
  if (xs.read(xs::kNoTransaction, frontend + "/multi-queue-num-queues")) {
    auto n = xs::read_uint(xs, xs::kNoTransaction, frontend + "/multi-queue-num-queues");
    if (!n || *n == 0 || *n > limits.max_queues) {
      return "multi-queue-num-queues must be between 1 and " + std::to_string(limits.max_queues);
    }
    queues = static_cast<unsigned>(*n);
  }

  rings.queues.resize(queues);
  for (unsigned q = 0; q < queues; ++q) {
    const std::string dir = queues == 1 ? frontend : frontend + "/queue-" + std::to_string(q);
    if (auto error = read_queue(xs, dir, rings.ring_page_order, rings.queues[q])) return *error;
  }

  rings.wants_persistent = xs::read_bool(xs, xs::kNoTransaction, frontend + "/feature-persistent").value_or(false);
  return rings;
}

}  // namespace xbb::backend
