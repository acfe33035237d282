// Segments of an indirect request, which live in guest pages named by
// Request::indirect_grefs rather than in the ring slot.
//
// The engine copies those pages into a private buffer (one batched grant
// copy) after validate_header() has bounded nr_segments, then fills the
// request from that buffer. The layout is struct blkif_request_segment,
// 8 bytes, 512 per page, the same in every ABI.
#pragma once

#include <cstddef>
#include <span>

#include "ring/protocol/Request.hpp"

namespace xbb::ring {

inline constexpr size_t kIndirectSegmentBytes = 8;

// Bytes of indirect pages holding `nr_segments` segments.
constexpr size_t indirect_bytes_for(unsigned nr_segments) {
  return size_t(nr_segments) * kIndirectSegmentBytes;
}

// Fills req.segments[0, nr_segments) from `pages` (the private copy of the
// indirect pages, consecutive). Returns false, leaving the segments alone,
// when req is not indirect, nr_segments exceeds kMaxSegments, or `pages` is
// shorter than indirect_bytes_for(nr_segments).
bool decode_indirect_segments(Request& req, std::span<const std::byte> pages);

// The frontend's direction: writes `segments` into page images (pad bytes
// zeroed). False when `pages` is too small.
bool encode_indirect_segments(std::span<const Segment> segments, std::span<std::byte> pages);

}  // namespace xbb::ring
