// One guest request, decoded from whichever ABI the ring uses into the single
// shape the engine works with. Built from a private copy of the ring slot,
// never from shared memory.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace xbb::ring {

inline constexpr unsigned kMaxDirectSegments = 11;  // BLKIF_MAX_SEGMENTS_PER_REQUEST
inline constexpr unsigned kMaxIndirectPages = 8;    // BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST
inline constexpr unsigned kSegmentsPerIndirectPage = 512;
inline constexpr unsigned kMaxSegments = 256;  // the most we ever advertise (feature-max-indirect-segments)
inline constexpr unsigned kSectorSize = 512;   // request sectors are always 512-byte units
inline constexpr unsigned kSectorsPerPage = 8;

// Wire operation codes (checked against blkif.h in LayoutChecks.cpp).
inline constexpr uint8_t kOpRead = 0;
inline constexpr uint8_t kOpWrite = 1;
inline constexpr uint8_t kOpWriteBarrier = 2;
inline constexpr uint8_t kOpFlushDiskCache = 3;
inline constexpr uint8_t kOpDiscard = 5;
inline constexpr uint8_t kOpIndirect = 6;
inline constexpr uint8_t kDiscardSecureFlag = 1;  // BLKIF_DISCARD_SECURE

// Response status codes (BLKIF_RSP_*).
inline constexpr int16_t kStatusOkay = 0;
inline constexpr int16_t kStatusError = -1;
inline constexpr int16_t kStatusNotSupported = -2;

enum class Operation : uint8_t { Read, Write, WriteBarrier, FlushDiskCache, Discard, Unknown };

// Read/Write/WriteBarrier/FlushDiskCache/Discard for their wire codes,
// Unknown for anything else (including INDIRECT, which is not an operation
// by itself).
constexpr Operation operation_from_wire(uint8_t op) {
  switch (op) {
    case kOpRead:
      return Operation::Read;
    case kOpWrite:
      return Operation::Write;
    case kOpWriteBarrier:
      return Operation::WriteBarrier;
    case kOpFlushDiskCache:
      return Operation::FlushDiskCache;
    case kOpDiscard:
      return Operation::Discard;
    default:
      return Operation::Unknown;
  }
}

std::string_view to_string(Operation op);

struct Segment {
  uint32_t gref;
  uint8_t first_sect;  // first 512-byte sector of the page used
  uint8_t last_sect;   // last one, inclusive

  // Sectors covered, 0 when first > last (rejected by the validator).
  constexpr uint32_t sectors() const {
    return last_sect >= first_sect ? uint32_t(last_sect) - first_sect + 1 : 0;
  }
  constexpr uint32_t offset_bytes() const { return uint32_t(first_sect) * kSectorSize; }
  constexpr uint32_t length_bytes() const { return sectors() * kSectorSize; }
};

struct Request {
  uint64_t id = 0;  // echoed in the response
  // The operation byte to echo in the response. For a direct request this
  // is the operation byte as the guest wrote it. For BLKIF_OP_INDIRECT it is
  // the indirect_op byte, NOT 6: Linux blkback answers with the inner
  // operation and Linux blkfront (since 5.14) rejects a response whose
  // operation is not the indirect_op, marking the whole disk broken.
  uint8_t wire_operation = 0;
  // For INDIRECT: the indirect_op (Read/Write); Unknown for anything else.
  Operation operation = Operation::Unknown;
  uint16_t handle = 0;
  uint64_t sector_number = 0;  // 512-byte units
  // As the guest wrote it; for indirect validated before the pages are read.
  uint16_t nr_segments = 0;
  bool indirect = false;
  // Derived from nr_segments for indirect requests (ceil(n / 512), at most 8).
  uint8_t nr_indirect_pages = 0;
  std::array<uint32_t, kMaxIndirectPages> indirect_grefs{};
  uint64_t discard_nr_sectors = 0;
  // The guest asked for a secure discard. blkif.h says the flag is ignored
  // when the backend did not advertise discard-secure: see
  // wants_secure_discard() in Validator.hpp.
  bool discard_secure = false;
  // Filled at decode for direct requests, by decode_indirect_segments() for
  // indirect ones. Only the first segment_count() entries are meaningful.
  std::array<Segment, kMaxSegments> segments{};

  // How many entries of `segments` carry data from the guest: nr_segments,
  // bounded by what the layout can hold (the validator rejects the excess).
  constexpr unsigned segment_count() const {
    const unsigned cap = indirect ? kMaxSegments : kMaxDirectSegments;
    return nr_segments < cap ? nr_segments : cap;
  }
  // Data sectors (512-byte units) over the segments; not the discard length.
  constexpr uint64_t sectors() const {
    uint64_t total = 0;
    for (unsigned i = 0; i < segment_count(); ++i) total += segments[i].sectors();
    return total;
  }
  constexpr uint64_t bytes() const { return sectors() * kSectorSize; }
  // Whether the request changes the disk's contents.
  constexpr bool writes_data() const {
    switch (operation) {
      case Operation::Write:
      case Operation::Discard:
        return true;
      case Operation::WriteBarrier:
      case Operation::FlushDiskCache:
        return nr_segments > 0;
      default:
        return false;
    }
  }
};

// Pages needed for `nr_segments` indirect segments (may exceed 8 for a
// hostile count; the validator rejects that).
constexpr unsigned indirect_pages_for(unsigned nr_segments) {
  return (nr_segments + kSegmentsPerIndirectPage - 1) / kSegmentsPerIndirectPage;
}

}  // namespace xbb::ring
