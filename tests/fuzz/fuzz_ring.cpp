// Fuzz target for everything in ring/protocol that reads guest bytes: a
// shared ring of any ABI and size, with hostile indices and contents, and
// indirect pages, run through next_request -> validate_header ->
// decode_indirect_segments -> validate -> push_response.
//
// Invariants (abort on violation, so both libFuzzer and the replay runner
// catch them): nothing outside the ring buffer is touched (ASan), a runaway
// producer stops consumption, at most a ring's worth of requests is in
// flight, every consumed request gets exactly one response with the status
// the validator chose, and accepted requests really are within the rules.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include <spdlog/spdlog.h>

#include "ring/protocol/BackRing.hpp"
#include "ring/protocol/IndirectSegments.hpp"
#include "ring/protocol/RequestCodec.hpp"
#include "ring/protocol/ResponseCodec.hpp"
#include "ring/protocol/RingGeometry.hpp"
#include "ring/protocol/Validator.hpp"

namespace {

using namespace xbb::ring;

#define FUZZ_CHECK(cond)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "fuzz_ring: invariant failed at %s:%d: %s\n", __FILE__,  \
                   __LINE__, #cond);                                                  \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

// Reads the input front to back; past the end everything reads as zero.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t u16() {
    const uint16_t lo = u8();
    return uint16_t(lo | u8() << 8);
  }
  uint32_t u32() {
    const uint32_t lo = u16();
    return lo | uint32_t(u16()) << 16;
  }
  // The unread rest, for filling memory.
  const uint8_t* rest() const { return data_ + pos_; }
  size_t rest_size() const { return pos_ < size_ ? size_ - pos_ : 0; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

void fill_cyclic(std::byte* dst, size_t n, const uint8_t* src, size_t src_n, size_t phase) {
  if (src_n == 0) {
    std::memset(dst, 0, n);
    return;
  }
  // One period by hand, then keep doubling what is already there.
  const size_t period = n < src_n ? n : src_n;
  for (size_t i = 0; i < period; ++i) dst[i] = std::byte(src[(i + phase) % src_n]);
  for (size_t done = period; done < n;) {
    const size_t chunk = done * 2 <= n ? done : n - done;
    // Copying a multiple of the period keeps the tiling seamless.
    const size_t aligned = chunk - chunk % src_n;
    const size_t step = aligned == 0 ? chunk : aligned;
    std::memcpy(dst + done, dst, step);
    done += step;
  }
}

// Steers random slot bytes toward the interesting cases (real operation
// codes, small segment counts) without excluding anything: a byte with its
// top bits set is left exactly as the input wrote it.
void steer_slot(std::byte* slot, WireLayout layout) {
  auto b = [&](size_t i) -> uint8_t& { return *reinterpret_cast<uint8_t*>(slot + i); };
  if (b(0) < 0xc0) b(0) = b(0) % 7;  // 0..6, including reserved 4
  if (b(0) == kOpIndirect) {
    if (b(1) < 0xc0) b(1) = b(1) % 3;  // READ, WRITE or a bad inner op
    if (b(3) < 0x80) b(3) = 0;         // nr_segments mostly < 256
  } else if (b(0) != kOpDiscard) {
    if (b(1) < 0x80) b(1) = b(1) % 13;
    const size_t seg0 = layout == WireLayout::X86_64 ? 24 : 20;
    for (size_t s = 0; s < kMaxDirectSegments; ++s) {
      uint8_t& first = b(seg0 + 8 * s + 4);
      uint8_t& last = b(seg0 + 8 * s + 5);
      if (first < 0xc0) first %= 8;
      if (last < 0xc0) last = uint8_t(first % 8 + last % (8 - first % 8));
    }
  }
}

// Only the first kMaxSegments segments can ever be accepted and read.
void steer_indirect_pages(std::byte* pages) {
  for (size_t off = 0; off < kMaxSegments * kIndirectSegmentBytes; off += 8) {
    auto& first = reinterpret_cast<uint8_t&>(pages[off + 4]);
    auto& last = reinterpret_cast<uint8_t&>(pages[off + 5]);
    if (first < 0xc0) first %= 8;
    if (last < 0xc0) last = uint8_t(first % 8 + last % (8 - first % 8));
  }
}

void check_accepted(const Request& req, const DiskGeometry& disk) {
  if (req.operation == Operation::Discard) {
    FUZZ_CHECK(!disk.read_only);
    FUZZ_CHECK(req.sector_number + req.discard_nr_sectors >= req.sector_number);
    FUZZ_CHECK(req.sector_number + req.discard_nr_sectors <= disk.sectors);
    return;
  }
  FUZZ_CHECK(req.nr_segments <= (req.indirect ? kMaxSegments : kMaxDirectSegments));
  if (req.indirect) FUZZ_CHECK(req.nr_segments <= disk.max_indirect_segments);
  if (req.operation == Operation::Read || req.operation == Operation::Write)
    FUZZ_CHECK(req.nr_segments > 0);
  for (unsigned i = 0; i < req.nr_segments; ++i) {
    FUZZ_CHECK(req.segments[i].first_sect <= req.segments[i].last_sect);
    FUZZ_CHECK(req.segments[i].last_sect < kSectorsPerPage);
  }
  if (req.nr_segments > 0) {
    FUZZ_CHECK(req.sector_number + req.sectors() <= disk.sectors);
    FUZZ_CHECK(req.sector_number + req.sectors() >= req.sector_number);
    FUZZ_CHECK(!(disk.read_only && req.operation != Operation::Read));
  }
}

void run(const uint8_t* data, size_t size) {
  Input in(data, size);
  const Abi abi = static_cast<Abi>(in.u8() % 3);
  const unsigned pages = 1u << (in.u8() % (kMaxRingPageOrder + 1));
  const uint32_t start = in.u32();
  const uint32_t delta_raw = in.u32();
  const uint8_t delta_mode = in.u8();
  const uint8_t switch_after = in.u8();
  const uint32_t delta2_raw = in.u32();

  DiskGeometry disk;
  disk.max_indirect_segments = uint16_t(in.u16() % 1100);
  const uint8_t flags = in.u8();
  disk.read_only = flags & 1;
  disk.flush_supported = flags & 2;
  disk.barrier_supported = flags & 4;
  disk.discard_supported = flags & 8;
  disk.secure_discard_supported = flags & 16;
  disk.logical_block_size = 512u << (in.u8() % 4);
  const uint32_t sectors_base = in.u32();
  disk.sectors = (flags & 32) ? UINT64_MAX - sectors_base : uint64_t(sectors_base) << (in.u8() % 24);

  const uint32_t ring_size = ring_entries(abi, pages);
  const size_t eb = entry_bytes(abi);
  // Mostly producer indices within reach; sometimes anything at all.
  const uint32_t delta = (delta_mode & 0x80) ? delta_raw : delta_raw % (ring_size + 2);
  const uint32_t delta2 = (delta_mode & 0x40) ? delta2_raw : delta2_raw % (2 * ring_size + 2);

  // Exactly the ring's size, so ASan sees any access past it.
  const size_t ring_bytes = size_t(pages) * kRingPageBytes;
  const auto ring_buffer = std::make_unique_for_overwrite<std::byte[]>(ring_bytes);
  std::byte* const ring = ring_buffer.get();
  std::memset(ring, 0, layout::kSringHeaderBytes);
  // The rest of the input tiles the entries, so an input holding one slot
  // image fills every slot with it.
  fill_cyclic(ring + layout::kSringHeaderBytes, ring_bytes - layout::kSringHeaderBytes,
              in.rest(), in.rest_size(), 0);
  for (uint32_t i = 0; i < ring_size; ++i)
    steer_slot(ring + layout::kSringHeaderBytes + i * eb, wire_layout(abi));
  auto set_u32 = [&](size_t off, uint32_t v) { std::memcpy(ring + off, &v, 4); };
  set_u32(layout::kReqProdOffset, start + delta);
  set_u32(layout::kRspProdOffset, start);

  // Eight pages, as the engine's copy buffer would be; only the first
  // holds input (a bounded request never needs more).
  const size_t indirect_bytes = kMaxIndirectPages * kRingPageBytes;
  const auto indirect_buffer = std::make_unique_for_overwrite<std::byte[]>(indirect_bytes);
  std::byte* const indirect = indirect_buffer.get();
  fill_cyclic(indirect, kRingPageBytes, in.rest(), in.rest_size(), 7);
  std::memset(indirect + kRingPageBytes, 0xEE, indirect_bytes - kRingPageBytes);
  steer_indirect_pages(indirect);

  BackRing back(ring, pages, abi, start);
  const Availability first = back.availability();
  FUZZ_CHECK(first.unconsumed <= ring_size);
  FUZZ_CHECK(first.runaway == (delta > ring_size));

  struct Answer {
    uint64_t id;
    uint8_t op;
    int16_t status;
  };
  std::vector<Answer> answers;
  answers.reserve(3 * ring_size);
  Request req;
  while (back.next_request(req)) {
    FUZZ_CHECK(!first.runaway);
    FUZZ_CHECK(back.responses_owed() <= ring_size);
    FUZZ_CHECK(answers.size() < 3 * size_t(ring_size));

    Rejection verdict = validate_header(req, disk);
    if (verdict == Rejection::None && req.indirect) {
      FUZZ_CHECK(req.nr_segments <= kMaxSegments);
      FUZZ_CHECK(req.nr_indirect_pages >= 1 && req.nr_indirect_pages <= kMaxIndirectPages);
      const std::span<const std::byte> copied(indirect,
                                              size_t(req.nr_indirect_pages) * kRingPageBytes);
      FUZZ_CHECK(decode_indirect_segments(req, copied));
    }
    if (verdict == Rejection::None) verdict = validate(req, disk);
    if (verdict == Rejection::None) check_accepted(req, disk);
    FUZZ_CHECK(!to_string(verdict).empty());

    const int16_t status = response_status(verdict);
    FUZZ_CHECK(back.push_response(req.id, req.wire_operation, status));
    answers.push_back({req.id, req.wire_operation, status});
    // Published as the worker does once per pass: the ring consumes no
    // further than a ring's length past the responses it published.
    if (answers.size() % 4 == 0) back.push_responses_and_check_notify();

    // The guest moves its producer index while we work.
    if (answers.size() == switch_after) set_u32(layout::kReqProdOffset, start + delta2);
  }
  FUZZ_CHECK(back.responses_owed() == 0);
  FUZZ_CHECK(!back.push_response(0, 0, 0));
  if (!back.halted()) FUZZ_CHECK(!back.final_check_for_requests());
  back.push_responses_and_check_notify();

  uint32_t rsp_prod;
  std::memcpy(&rsp_prod, ring + layout::kRspProdOffset, 4);
  FUZZ_CHECK(rsp_prod == start + uint32_t(answers.size()));

  // The most recent responses are still in their slots, exactly as decided.
  const size_t keep = answers.size() < ring_size ? answers.size() : ring_size;
  for (size_t k = answers.size() - keep; k < answers.size(); ++k) {
    const uint32_t idx = uint32_t(start + k) & (ring_size - 1);
    Response rsp;
    FUZZ_CHECK(decode_response(
        abi, std::span<const std::byte>(ring + layout::kSringHeaderBytes + idx * eb, eb),
        rsp));
    FUZZ_CHECK(rsp.id == answers[k].id);
    FUZZ_CHECK(rsp.operation == answers[k].op);
    FUZZ_CHECK(rsp.status == answers[k].status);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // A hostile ring is the normal case here; its warnings would only slow us.
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  run(data, size);
  return 0;
}
