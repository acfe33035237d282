#include "ring/protocol/Validator.hpp"

#include <algorithm>

namespace xbb::ring {
namespace {

// Logical block size in 512-byte sectors (1 for 512 or anything smaller).
uint64_t sectors_per_block(const DiskGeometry& disk) {
  return std::max<uint64_t>(1, disk.logical_block_size / kSectorSize);
}

// The largest indirect count we will ever read: what we advertised, and
// never more than Request::segments holds.
unsigned indirect_segment_limit(const DiskGeometry& disk) {
  return std::min<unsigned>(disk.max_indirect_segments, kMaxSegments);
}

Rejection check_operation(const Request& req, const DiskGeometry& disk) {
  if (req.indirect) {
    if (disk.max_indirect_segments == 0) return Rejection::UnsupportedOperation;
    if (req.operation != Operation::Read && req.operation != Operation::Write)
      return Rejection::BadIndirectOperation;
    return Rejection::None;
  }
  switch (req.operation) {
    case Operation::Read:
    case Operation::Write:
      return Rejection::None;
    case Operation::WriteBarrier:
      return disk.barrier_supported ? Rejection::None : Rejection::UnsupportedOperation;
    case Operation::FlushDiskCache:
      return disk.flush_supported ? Rejection::None : Rejection::UnsupportedOperation;
    case Operation::Discard:
      return disk.discard_supported ? Rejection::None : Rejection::UnsupportedOperation;
    case Operation::Unknown:
      break;
  }
  return Rejection::UnknownOperation;
}

Rejection check_discard(const Request& req, const DiskGeometry& disk) {
  if (disk.read_only) return Rejection::WriteToReadOnly;
  const uint64_t start = req.sector_number;
  const uint64_t count = req.discard_nr_sectors;
  if (start > UINT64_MAX - count) return Rejection::SectorOverflow;
  if (start + count > disk.sectors) return Rejection::PastEndOfDisk;
  const uint64_t spb = sectors_per_block(disk);
  if (start % spb != 0 || count % spb != 0) return Rejection::DiscardMisaligned;
  return Rejection::None;
}

Rejection check_segment_count(const Request& req, const DiskGeometry& disk) {
  if (req.indirect) {
    if (req.nr_segments == 0) return Rejection::NoSegments;
    if (req.nr_segments > indirect_segment_limit(disk)) return Rejection::TooManyIndirectSegments;
    return Rejection::None;
  }
  switch (req.operation) {
    case Operation::Read:
    case Operation::Write:
      if (req.nr_segments == 0) return Rejection::NoSegments;
      break;
    default:
      // A barrier or a flush may carry data or not; with data, Linux
      // blkback writes it after flushing (REQ_PREFLUSH), and so do we.
      break;
  }
  if (req.nr_segments > kMaxDirectSegments) return Rejection::TooManySegments;
  return Rejection::None;
}

}  // namespace

std::string_view to_string(Rejection r) {
  switch (r) {
    case Rejection::None:
      return "valid";
    case Rejection::UnknownOperation:
      return "unknown operation";
    case Rejection::UnsupportedOperation:
      return "operation not supported by this disk";
    case Rejection::BadIndirectOperation:
      return "indirect request whose indirect_op is not read or write";
    case Rejection::NoSegments:
      return "read or write without segments";
    case Rejection::TooManySegments:
      return "more than 11 segments in a direct request";
    case Rejection::TooManyIndirectSegments:
      return "more indirect segments than advertised";
    case Rejection::BadFirstLastSector:
      return "segment first_sect greater than last_sect";
    case Rejection::SectorBeyondPage:
      return "segment last_sect beyond the page";
    case Rejection::MisalignedToLogicalBlock:
      return "not aligned to the logical block size";
    case Rejection::SectorOverflow:
      return "sector number plus length overflows";
    case Rejection::PastEndOfDisk:
      return "access past the end of the disk";
    case Rejection::WriteToReadOnly:
      return "write to a read-only disk";
    case Rejection::DiscardMisaligned:
      return "discard not aligned to the logical block size";
  }
  return "invalid rejection";
}

int16_t response_status(Rejection r) {
  switch (r) {
    case Rejection::None:
      return kStatusOkay;
    case Rejection::UnknownOperation:
    case Rejection::UnsupportedOperation:
      return kStatusNotSupported;
    default:
      return kStatusError;
  }
}

Rejection validate_header(const Request& req, const DiskGeometry& disk) {
  if (auto r = check_operation(req, disk); r != Rejection::None) return r;
  if (!req.indirect && req.operation == Operation::Discard) return check_discard(req, disk);
  if (auto r = check_segment_count(req, disk); r != Rejection::None) return r;
  if (disk.read_only && req.writes_data()) return Rejection::WriteToReadOnly;
  return Rejection::None;
}

Rejection validate(const Request& req, const DiskGeometry& disk) {
  if (auto r = validate_header(req, disk); r != Rejection::None) return r;
  if (req.operation == Operation::Discard) return Rejection::None;

  // nr_segments is now bounded by the array (11 direct, kMaxSegments indirect).
  // Alignment as Linux blkback checks it: the start and every segment's
  // length are whole logical blocks; where a segment starts in its page is
  // not checked (blkfront's DMA alignment is 512 bytes whatever the block
  // size, so a guest may send them). The engine bounces such segments when
  // it would otherwise hand storage a buffer off the block alignment.
  const uint64_t spb = sectors_per_block(disk);
  uint64_t total = 0;
  for (unsigned i = 0; i < req.nr_segments; ++i) {
    const Segment& s = req.segments[i];
    if (s.first_sect > s.last_sect) return Rejection::BadFirstLastSector;
    if (s.last_sect >= kSectorsPerPage) return Rejection::SectorBeyondPage;
    if (s.sectors() % spb != 0) return Rejection::MisalignedToLogicalBlock;
    total += s.sectors();
  }
  if (total == 0) return Rejection::None;  // a flush or barrier without data

  const uint64_t start = req.sector_number;
  if (start > UINT64_MAX - total) return Rejection::SectorOverflow;
  if (start + total > disk.sectors) return Rejection::PastEndOfDisk;
  if (start % spb != 0) return Rejection::MisalignedToLogicalBlock;
  return Rejection::None;
}

}  // namespace xbb::ring
