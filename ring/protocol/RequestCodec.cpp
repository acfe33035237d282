#include "ring/protocol/RequestCodec.hpp"

#include <algorithm>
#include <cstring>

#include "ring/protocol/Layouts.hpp"
#include "ring/protocol/RingGeometry.hpp"

namespace xbb::ring {
namespace {

// The three request layouts of one ABI, so each algorithm is written once.
template <typename Direct, typename Discard, typename Indirect>
struct LayoutSet {
  using DirectRequest = Direct;
  using DiscardRequest = Discard;
  using IndirectRequest = Indirect;
};
using X86_64Set = LayoutSet<layout::x86_64::Request, layout::x86_64::DiscardRequest,
                            layout::x86_64::IndirectRequest>;
using X86_32Set = LayoutSet<layout::x86_32::Request, layout::x86_32::DiscardRequest,
                            layout::x86_32::IndirectRequest>;

template <typename T>
T load(std::span<const std::byte> slot) {
  T value;
  std::memcpy(&value, slot.data(), sizeof(T));
  return value;
}

template <typename T>
void store(const T& value, std::span<std::byte> slot) {
  std::memcpy(slot.data(), &value, sizeof(T));
}

template <typename Set>
void decode(std::span<const std::byte> slot, Request& out) {
  const auto op = static_cast<uint8_t>(slot[0]);
  out.discard_nr_sectors = 0;
  out.discard_secure = false;
  out.nr_indirect_pages = 0;
  out.indirect = false;

  if (op == kOpIndirect) {
    const auto w = load<typename Set::IndirectRequest>(slot);
    out.id = w.id;
    out.indirect = true;
    out.wire_operation = w.indirect_op;
    out.operation = (w.indirect_op == kOpRead || w.indirect_op == kOpWrite)
                        ? operation_from_wire(w.indirect_op)
                        : Operation::Unknown;
    out.handle = w.handle;
    out.sector_number = w.sector_number;
    out.nr_segments = w.nr_segments;
    out.nr_indirect_pages =
        static_cast<uint8_t>(std::min(indirect_pages_for(w.nr_segments), kMaxIndirectPages));
    std::copy(std::begin(w.indirect_grefs), std::end(w.indirect_grefs),
              out.indirect_grefs.begin());
    return;
  }

  if (op == kOpDiscard) {
    const auto w = load<typename Set::DiscardRequest>(slot);
    out.id = w.id;
    out.wire_operation = op;
    out.operation = Operation::Discard;
    out.handle = w.handle;
    out.sector_number = w.sector_number;
    out.nr_segments = 0;
    out.discard_nr_sectors = w.nr_sectors;
    out.discard_secure = (w.flag & kDiscardSecureFlag) != 0;
    return;
  }

  // READ, WRITE, WRITE_BARRIER, FLUSH_DISKCACHE and anything unknown: the
  // id sits at the same offset in every layout, so even an unknown
  // operation gets a response the guest can match.
  const auto w = load<typename Set::DirectRequest>(slot);
  out.id = w.id;
  out.wire_operation = op;
  out.operation = operation_from_wire(op);
  out.handle = w.handle;
  out.sector_number = w.sector_number;
  out.nr_segments = w.nr_segments;
  const unsigned n = std::min<unsigned>(w.nr_segments, kMaxDirectSegments);
  for (unsigned i = 0; i < n; ++i)
    out.segments[i] = Segment{w.seg[i].gref, w.seg[i].first_sect, w.seg[i].last_sect};
}

template <typename Set>
bool encode(const Request& req, std::span<std::byte> slot) {
  if (req.indirect) {
    typename Set::IndirectRequest w{};
    w.operation = kOpIndirect;
    w.indirect_op = req.wire_operation;
    w.nr_segments = req.nr_segments;
    w.id = req.id;
    w.sector_number = req.sector_number;
    w.handle = req.handle;
    std::copy(req.indirect_grefs.begin(), req.indirect_grefs.end(), std::begin(w.indirect_grefs));
    store(w, slot);
    return true;
  }
  if (req.wire_operation == kOpDiscard) {
    typename Set::DiscardRequest w{};
    w.operation = kOpDiscard;
    w.flag = req.discard_secure ? kDiscardSecureFlag : 0;
    w.handle = req.handle;
    w.id = req.id;
    w.sector_number = req.sector_number;
    w.nr_sectors = req.discard_nr_sectors;
    store(w, slot);
    return true;
  }
  if (req.nr_segments > UINT8_MAX) return false;
  typename Set::DirectRequest w{};
  w.operation = req.wire_operation;
  w.nr_segments = static_cast<uint8_t>(req.nr_segments);
  w.handle = req.handle;
  w.id = req.id;
  w.sector_number = req.sector_number;
  const unsigned n = std::min<unsigned>(req.nr_segments, kMaxDirectSegments);
  for (unsigned i = 0; i < n; ++i) {
    w.seg[i].gref = req.segments[i].gref;
    w.seg[i].first_sect = req.segments[i].first_sect;
    w.seg[i].last_sect = req.segments[i].last_sect;
  }
  store(w, slot);
  return true;
}

}  // namespace

bool decode_request(Abi abi, std::span<const std::byte> slot, Request& out) {
  if (slot.size() < entry_bytes(abi)) return false;
  if (wire_layout(abi) == WireLayout::X86_64)
    decode<X86_64Set>(slot, out);
  else
    decode<X86_32Set>(slot, out);
  return true;
}

bool encode_request(Abi abi, const Request& req, std::span<std::byte> slot) {
  if (slot.size() < entry_bytes(abi)) return false;
  return wire_layout(abi) == WireLayout::X86_64 ? encode<X86_64Set>(req, slot)
                                                : encode<X86_32Set>(req, slot);
}

std::string_view to_string(Operation op) {
  switch (op) {
    case Operation::Read:
      return "read";
    case Operation::Write:
      return "write";
    case Operation::WriteBarrier:
      return "write-barrier";
    case Operation::FlushDiskCache:
      return "flush-diskcache";
    case Operation::Discard:
      return "discard";
    case Operation::Unknown:
      return "unknown";
  }
  return "invalid";
}

}  // namespace xbb::ring
