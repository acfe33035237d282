// One response as the frontend reads it back (used by FrontRing and tests).
#pragma once

#include <cstdint>

namespace xbb::ring {

struct Response {
  uint64_t id = 0;
  uint8_t operation = 0;
  int16_t status = 0;
};

}  // namespace xbb::ring
