// Compile-time proof that our Native layout is the official headers' layout,
// so decoding a native ring through layout::x86_64 (or x86_32) is exact.
#include <cstddef>
#include <cstdint>

// blkif.h needs grant_ref_t and the ring macros before it.
#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>

#include "ring/protocol/Layouts.hpp"
#include "ring/protocol/Request.hpp"
#include "ring/protocol/RingGeometry.hpp"

namespace xbb::ring {
namespace {

template <typename Native, typename Ours>
constexpr bool same_size() {
  return sizeof(Native) == sizeof(Ours);
}

// The sring header as ring.h defines it.
static_assert(offsetof(struct blkif_sring, req_prod) == layout::kReqProdOffset);
static_assert(offsetof(struct blkif_sring, req_event) == layout::kReqEventOffset);
static_assert(offsetof(struct blkif_sring, rsp_prod) == layout::kRspProdOffset);
static_assert(offsetof(struct blkif_sring, rsp_event) == layout::kRspEventOffset);
static_assert(offsetof(struct blkif_sring, ring) == layout::kSringHeaderBytes);
static_assert(sizeof(RING_IDX) == sizeof(uint32_t));

// Constants the engine uses without including Xen headers.
static_assert(kMaxDirectSegments == BLKIF_MAX_SEGMENTS_PER_REQUEST);
static_assert(kMaxIndirectPages == BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
static_assert(layout::kDirectSegments == BLKIF_MAX_SEGMENTS_PER_REQUEST);
static_assert(kSegmentsPerIndirectPage * sizeof(struct blkif_request_segment) == kRingPageBytes);
static_assert(kStatusOkay == BLKIF_RSP_OKAY && kStatusError == BLKIF_RSP_ERROR &&
              kStatusNotSupported == BLKIF_RSP_EOPNOTSUPP);
static_assert(kOpRead == BLKIF_OP_READ && kOpWrite == BLKIF_OP_WRITE &&
              kOpWriteBarrier == BLKIF_OP_WRITE_BARRIER &&
              kOpFlushDiskCache == BLKIF_OP_FLUSH_DISKCACHE && kOpDiscard == BLKIF_OP_DISCARD &&
              kOpIndirect == BLKIF_OP_INDIRECT && kDiscardSecureFlag == BLKIF_DISCARD_SECURE);

// The segment is the same in every ABI.
static_assert(sizeof(struct blkif_request_segment) == sizeof(layout::Segment));
static_assert(offsetof(struct blkif_request_segment, first_sect) ==
              offsetof(layout::Segment, first_sect));
static_assert(offsetof(struct blkif_request_segment, last_sect) ==
              offsetof(layout::Segment, last_sect));

// Native ring size straight from ring.h's macro, for every order.
static_assert(ring_entries_for_order(Abi::Native, 0) == __CONST_RING_SIZE(blkif, 4096 << 0));
static_assert(ring_entries_for_order(Abi::Native, 1) == __CONST_RING_SIZE(blkif, 4096 << 1));
static_assert(ring_entries_for_order(Abi::Native, 2) == __CONST_RING_SIZE(blkif, 4096 << 2));
static_assert(ring_entries_for_order(Abi::Native, 3) == __CONST_RING_SIZE(blkif, 4096 << 3));
static_assert(ring_entries_for_order(Abi::Native, 4) == __CONST_RING_SIZE(blkif, 4096 << 4));
static_assert(ring_entries_for_order(Abi::Native, 5) == __CONST_RING_SIZE(blkif, 4096 << 5));
static_assert(entry_bytes(Abi::Native) == sizeof(union blkif_sring_entry));

#if defined(__x86_64__) || defined(__aarch64__)
static_assert(wire_layout(Abi::Native) == WireLayout::X86_64);
namespace n = layout::x86_64;
#elif defined(__i386__)
static_assert(wire_layout(Abi::Native) == WireLayout::X86_32);
namespace n = layout::x86_32;
#else
#error "check the native blkif layout of this architecture"
#endif

static_assert(same_size<struct blkif_request, n::Request>());
static_assert(offsetof(struct blkif_request, nr_segments) == offsetof(n::Request, nr_segments));
static_assert(offsetof(struct blkif_request, handle) == offsetof(n::Request, handle));
static_assert(offsetof(struct blkif_request, id) == offsetof(n::Request, id));
static_assert(offsetof(struct blkif_request, sector_number) ==
              offsetof(n::Request, sector_number));
static_assert(offsetof(struct blkif_request, seg) == offsetof(n::Request, seg));

static_assert(same_size<struct blkif_request_discard, n::DiscardRequest>());
static_assert(offsetof(struct blkif_request_discard, flag) == offsetof(n::DiscardRequest, flag));
static_assert(offsetof(struct blkif_request_discard, handle) ==
              offsetof(n::DiscardRequest, handle));
static_assert(offsetof(struct blkif_request_discard, id) == offsetof(n::DiscardRequest, id));
static_assert(offsetof(struct blkif_request_discard, sector_number) ==
              offsetof(n::DiscardRequest, sector_number));
static_assert(offsetof(struct blkif_request_discard, nr_sectors) ==
              offsetof(n::DiscardRequest, nr_sectors));

static_assert(same_size<struct blkif_request_indirect, n::IndirectRequest>());
static_assert(offsetof(struct blkif_request_indirect, indirect_op) ==
              offsetof(n::IndirectRequest, indirect_op));
static_assert(offsetof(struct blkif_request_indirect, nr_segments) ==
              offsetof(n::IndirectRequest, nr_segments));
static_assert(offsetof(struct blkif_request_indirect, id) == offsetof(n::IndirectRequest, id));
static_assert(offsetof(struct blkif_request_indirect, sector_number) ==
              offsetof(n::IndirectRequest, sector_number));
static_assert(offsetof(struct blkif_request_indirect, handle) ==
              offsetof(n::IndirectRequest, handle));
static_assert(offsetof(struct blkif_request_indirect, indirect_grefs) ==
              offsetof(n::IndirectRequest, indirect_grefs));

static_assert(same_size<struct blkif_response, n::Response>());
static_assert(offsetof(struct blkif_response, operation) == offsetof(n::Response, operation));
static_assert(offsetof(struct blkif_response, status) == offsetof(n::Response, status));

}  // namespace
}  // namespace xbb::ring
