// Checks a decoded guest request against the rules of blkif and the disk
// behind it, naming the first rule broken.
//
// Two steps, because indirect segments live in guest pages: validate_header()
// needs only the ring slot and bounds nr_segments, so the engine may then
// copy at most that many indirect segments; validate() checks everything,
// segments included, and is the only verdict to act on.
#pragma once

#include <cstdint>
#include <string_view>

#include "ring/protocol/Request.hpp"

namespace xbb::ring {

struct DiskGeometry {
  uint64_t sectors = 0;               // disk size in 512-byte units
  uint32_t logical_block_size = 512;  // bytes; requests must be aligned to it
  bool read_only = false;
  uint16_t max_indirect_segments = 0;  // as advertised; 0 = indirect not offered
  bool flush_supported = false;
  bool barrier_supported = false;
  bool discard_supported = false;
  bool secure_discard_supported = false;
};

enum class Rejection {
  None,
  UnknownOperation,          // an operation byte blkif does not define
  UnsupportedOperation,      // defined, but not advertised for this disk
  BadIndirectOperation,      // INDIRECT whose indirect_op is not READ or WRITE
  NoSegments,                // READ or WRITE (direct or indirect) without segments
  TooManySegments,           // direct request with more than 11 segments
  TooManyIndirectSegments,   // indirect request beyond the advertised maximum
  BadFirstLastSector,        // a segment's first_sect > last_sect
  SectorBeyondPage,          // a segment's last_sect >= 8
  MisalignedToLogicalBlock,  // start, or a segment's length, not a whole number of logical blocks
  SectorOverflow,            // sector_number + length wraps around 2^64
  PastEndOfDisk,             // the request reaches beyond the last sector
  WriteToReadOnly,           // write, barrier/flush with data, or discard on a read-only disk
  DiscardMisaligned,         // discard start or length not a multiple of the logical block
};

std::string_view to_string(Rejection r);

// BLKIF_RSP_EOPNOTSUPP for UnknownOperation and UnsupportedOperation,
// BLKIF_RSP_OKAY for None, BLKIF_RSP_ERROR for everything else.
int16_t response_status(Rejection r);

// Everything decidable from the ring slot alone: the operation and whether
// the disk offers it, the segment count (so an indirect request never makes
// us read more than min(max_indirect_segments, kMaxSegments) segments),
// read-only, and the whole of a discard.
Rejection validate_header(const Request& req, const DiskGeometry& disk);

// The full verdict: validate_header() plus every segment (first/last sector,
// alignment) and the range the data covers. For an indirect request call it
// after decode_indirect_segments().
Rejection validate(const Request& req, const DiskGeometry& disk);

// Whether a discard should be secure: blkif.h says BLKIF_DISCARD_SECURE is
// ignored unless the backend advertised discard-secure.
constexpr bool wants_secure_discard(const Request& req, const DiskGeometry& disk) {
  return req.operation == Operation::Discard && req.discard_secure &&
         disk.secure_discard_supported;
}

}  // namespace xbb::ring
