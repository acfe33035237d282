#include "ring/protocol/IndirectSegments.hpp"

#include <cstring>

#include "ring/protocol/Layouts.hpp"

namespace xbb::ring {

static_assert(sizeof(layout::Segment) == kIndirectSegmentBytes);

bool decode_indirect_segments(Request& req, std::span<const std::byte> pages) {
  if (!req.indirect || req.nr_segments > kMaxSegments) return false;
  if (pages.size() < indirect_bytes_for(req.nr_segments)) return false;
  for (unsigned i = 0; i < req.nr_segments; ++i) {
    layout::Segment w;
    std::memcpy(&w, pages.data() + size_t(i) * kIndirectSegmentBytes, sizeof(w));
    req.segments[i] = Segment{w.gref, w.first_sect, w.last_sect};
  }
  return true;
}

bool encode_indirect_segments(std::span<const Segment> segments, std::span<std::byte> pages) {
  if (pages.size() < indirect_bytes_for(static_cast<unsigned>(segments.size()))) return false;
  for (size_t i = 0; i < segments.size(); ++i) {
    layout::Segment w{};
    w.gref = segments[i].gref;
    w.first_sect = segments[i].first_sect;
    w.last_sect = segments[i].last_sect;
    std::memcpy(pages.data() + i * kIndirectSegmentBytes, &w, sizeof(w));
  }
  return true;
}

}  // namespace xbb::ring
