// Translation between a ring slot's bytes (in one ABI) and Request.
//
// Both directions work on private buffers only. The backend decodes a slot
// it has already copied out of the ring; the software frontend encodes into
// a private slot image and copies that into the ring.
#pragma once

#include <cstddef>
#include <span>

#include "ring/protocol/Abi.hpp"
#include "ring/protocol/Request.hpp"

namespace xbb::ring {

// Decodes `slot` (at least entry_bytes(abi) bytes) into `out`, overwriting
// every field except the segments beyond nr_segments (and all segments of an
// indirect request, which come from decode_indirect_segments()). Never
// rejects: an unknown operation decodes as Operation::Unknown and a hostile
// segment count is kept as written, for the validator to report. Returns
// false only when `slot` is too small.
bool decode_request(Abi abi, std::span<const std::byte> slot, Request& out);

// Encodes `req` into `slot` (at least entry_bytes(abi) bytes; the whole
// layout is written, padding zeroed). req.indirect selects the indirect
// layout (its indirect_op is req.wire_operation), wire_operation == DISCARD
// the discard layout, anything else the direct layout with
// min(nr_segments, 11) segments. Returns false when the slot is too small or
// a direct request's nr_segments does not fit the 8-bit wire field.
bool encode_request(Abi abi, const Request& req, std::span<std::byte> slot);

}  // namespace xbb::ring
