// Test helper: requests as a frontend would build them.
#pragma once

#include <initializer_list>

#include "ring/protocol/Request.hpp"

namespace xbb::ring::test {

inline Request direct_request(uint8_t wire_op, uint64_t id, uint64_t sector,
                              std::initializer_list<Segment> segs) {
  Request r;
  r.id = id;
  r.wire_operation = wire_op;
  r.operation = operation_from_wire(wire_op);
  r.handle = 0x0300;
  r.sector_number = sector;
  r.nr_segments = static_cast<uint16_t>(segs.size());
  unsigned i = 0;
  for (const Segment& s : segs) r.segments[i++] = s;
  return r;
}

// `n` whole-page segments with grefs base, base+1, ...
inline Request full_pages_request(uint8_t wire_op, uint64_t id, uint64_t sector, unsigned n,
                                  uint32_t gref_base = 100) {
  Request r = direct_request(wire_op, id, sector, {});
  r.nr_segments = static_cast<uint16_t>(n);
  for (unsigned i = 0; i < n && i < kMaxSegments; ++i) r.segments[i] = {gref_base + i, 0, 7};
  return r;
}

inline Request discard_request(uint64_t id, uint64_t sector, uint64_t count, bool secure = false) {
  Request r;
  r.id = id;
  r.wire_operation = kOpDiscard;
  r.operation = Operation::Discard;
  r.handle = 0x0300;
  r.sector_number = sector;
  r.discard_nr_sectors = count;
  r.discard_secure = secure;
  return r;
}

// An indirect request of `n` whole-page segments (segments filled too, as
// after decode_indirect_segments()).
inline Request indirect_request(uint8_t inner_op, uint64_t id, uint64_t sector, unsigned n) {
  Request r = full_pages_request(inner_op, id, sector, n, 5000);
  r.indirect = true;
  r.operation = (inner_op == kOpRead || inner_op == kOpWrite) ? operation_from_wire(inner_op)
                                                              : Operation::Unknown;
  r.nr_indirect_pages = static_cast<uint8_t>(indirect_pages_for(n) > kMaxIndirectPages
                                                 ? kMaxIndirectPages
                                                 : indirect_pages_for(n));
  for (unsigned i = 0; i < kMaxIndirectPages; ++i) r.indirect_grefs[i] = 9000 + i;
  return r;
}

}  // namespace xbb::ring::test
