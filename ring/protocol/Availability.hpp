// What a consumer may take from a ring right now.
#pragma once

#include <cstdint>

namespace xbb::ring {

struct Availability {
  // Entries that can be consumed now (bounded by the ring size, and for
  // requests by the slots not holding unanswered requests).
  uint32_t unconsumed = 0;
  // The other end's producer index ran more than a ring ahead (or moved
  // backwards). The ring is halted for good: nothing more is consumed.
  bool runaway = false;
};

}  // namespace xbb::ring
