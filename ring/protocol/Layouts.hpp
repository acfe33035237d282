// The x86_32 and x86_64 wire layouts of blkif requests and responses.
//
// <xen/io/blkif.h> only describes the layout of the host it is compiled on;
// a backend must also read rings written by guests of the other bitness.
// Every byte of every struct is a named field (explicit padding, no implicit
// holes), so a value-initialised struct is all zeroes and nothing of ours
// can leak to the guest through padding (XSA-216).
//
// These structs are only ever memcpy'd to and from private copies; never
// point them at shared memory.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xbb::ring::layout {

// The shared ring page header (ring.h's DEFINE_RING_TYPES): four indices,
// private padding, then the entries start at byte 64.
inline constexpr size_t kReqProdOffset = 0;
inline constexpr size_t kReqEventOffset = 4;
inline constexpr size_t kRspProdOffset = 8;
inline constexpr size_t kRspEventOffset = 12;
inline constexpr size_t kSringHeaderBytes = 64;

inline constexpr unsigned kDirectSegments = 11;  // BLKIF_MAX_SEGMENTS_PER_REQUEST
inline constexpr unsigned kIndirectPages = 8;    // BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST

// struct blkif_request_segment: the same 8 bytes in every ABI, both inline in
// a direct request and packed 512 to a page in indirect pages.
struct Segment {
  uint32_t gref;
  uint8_t first_sect;
  uint8_t last_sect;
  uint16_t pad;
};
static_assert(sizeof(Segment) == 8);
static_assert(offsetof(Segment, first_sect) == 4 && offsetof(Segment, last_sect) == 5);

namespace x86_64 {

struct Request {
  uint8_t operation;
  uint8_t nr_segments;
  uint16_t handle;
  uint32_t pad;
  uint64_t id;
  uint64_t sector_number;
  Segment seg[kDirectSegments];
};

struct DiscardRequest {
  uint8_t operation;
  uint8_t flag;
  uint16_t handle;
  uint32_t pad;
  uint64_t id;
  uint64_t sector_number;
  uint64_t nr_sectors;
};

struct IndirectRequest {
  uint8_t operation;
  uint8_t indirect_op;
  uint16_t nr_segments;
  uint32_t pad1;
  uint64_t id;
  uint64_t sector_number;
  uint16_t handle;
  uint16_t pad2;
  uint32_t indirect_grefs[kIndirectPages];
  uint32_t pad3;
};

struct Response {
  uint64_t id;
  uint8_t operation;
  uint8_t pad1;
  int16_t status;
  uint32_t pad2;
};

static_assert(sizeof(Request) == 112);
static_assert(offsetof(Request, nr_segments) == 1 && offsetof(Request, handle) == 2);
static_assert(offsetof(Request, id) == 8 && offsetof(Request, sector_number) == 16);
static_assert(offsetof(Request, seg) == 24);

static_assert(sizeof(DiscardRequest) == 32);
static_assert(offsetof(DiscardRequest, flag) == 1 && offsetof(DiscardRequest, handle) == 2);
static_assert(offsetof(DiscardRequest, id) == 8 && offsetof(DiscardRequest, sector_number) == 16);
static_assert(offsetof(DiscardRequest, nr_sectors) == 24);

static_assert(sizeof(IndirectRequest) == 64);
static_assert(offsetof(IndirectRequest, indirect_op) == 1);
static_assert(offsetof(IndirectRequest, nr_segments) == 2);
static_assert(offsetof(IndirectRequest, id) == 8);
static_assert(offsetof(IndirectRequest, sector_number) == 16);
static_assert(offsetof(IndirectRequest, handle) == 24);
static_assert(offsetof(IndirectRequest, indirect_grefs) == 28);

static_assert(sizeof(Response) == 16);
static_assert(offsetof(Response, operation) == 8 && offsetof(Response, status) == 10);

}  // namespace x86_64

namespace x86_32 {

// i386 aligns uint64_t to 4 bytes; pack(4) reproduces that on any host.
#pragma pack(push, 4)

struct Request {
  uint8_t operation;
  uint8_t nr_segments;
  uint16_t handle;
  uint64_t id;
  uint64_t sector_number;
  Segment seg[kDirectSegments];
};

struct DiscardRequest {
  uint8_t operation;
  uint8_t flag;
  uint16_t handle;
  uint64_t id;
  uint64_t sector_number;
  uint64_t nr_sectors;
};

struct IndirectRequest {
  uint8_t operation;
  uint8_t indirect_op;
  uint16_t nr_segments;
  uint64_t id;
  uint64_t sector_number;
  uint16_t handle;
  uint16_t pad1;
  uint32_t indirect_grefs[kIndirectPages];
  uint64_t pad2;  // blkif.h pads the i386 struct to 64 bytes
};

struct Response {
  uint64_t id;
  uint8_t operation;
  uint8_t pad;
  int16_t status;
};

#pragma pack(pop)

static_assert(sizeof(Request) == 108 && alignof(Request) == 4);
static_assert(offsetof(Request, nr_segments) == 1 && offsetof(Request, handle) == 2);
static_assert(offsetof(Request, id) == 4 && offsetof(Request, sector_number) == 12);
static_assert(offsetof(Request, seg) == 20);

static_assert(sizeof(DiscardRequest) == 28);
static_assert(offsetof(DiscardRequest, flag) == 1 && offsetof(DiscardRequest, handle) == 2);
static_assert(offsetof(DiscardRequest, id) == 4 && offsetof(DiscardRequest, sector_number) == 12);
static_assert(offsetof(DiscardRequest, nr_sectors) == 20);

static_assert(sizeof(IndirectRequest) == 64);
static_assert(offsetof(IndirectRequest, indirect_op) == 1);
static_assert(offsetof(IndirectRequest, nr_segments) == 2);
static_assert(offsetof(IndirectRequest, id) == 4);
static_assert(offsetof(IndirectRequest, sector_number) == 12);
static_assert(offsetof(IndirectRequest, handle) == 20);
static_assert(offsetof(IndirectRequest, indirect_grefs) == 24);

static_assert(sizeof(Response) == 12);
static_assert(offsetof(Response, operation) == 8 && offsetof(Response, status) == 10);

}  // namespace x86_32

// The largest entry of any layout: the size of the private copy of one slot.
inline constexpr size_t kMaxEntryBytes = sizeof(x86_64::Request);

}  // namespace xbb::ring::layout
