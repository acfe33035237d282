#include "storage/snapshot/SnapshotStoreFormat.hpp"

#include <endian.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace xbb::storage {
namespace {

constexpr char kMagic[8] = {'X', 'B', 'B', 'S', 'N', 'A', 'P', '\0'};
constexpr size_t kChecksumAt = SnapshotHeader::kHeaderSize - 8;
constexpr size_t kIdentityAt = 88;
constexpr size_t kReasonAt = 600;

uint64_t fnv1a(const uint8_t* data, size_t size) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 0x100000001b3ull;
  return h;
}

void put32(uint8_t* at, uint32_t v) {
  v = htole32(v);
  std::memcpy(at, &v, 4);
}
void put64(uint8_t* at, uint64_t v) {
  v = htole64(v);
  std::memcpy(at, &v, 8);
}
uint32_t get32(const uint8_t* at) {
  uint32_t v;
  std::memcpy(&v, at, 4);
  return le32toh(v);
}
uint64_t get64(const uint8_t* at) {
  uint64_t v;
  std::memcpy(&v, at, 8);
  return le64toh(v);
}

void put_text(uint8_t* at, size_t field_size, const std::string& text) {
  const size_t n = std::min(text.size(), field_size - 1);
  std::memcpy(at, text.data(), n);
}
std::string get_text(const uint8_t* at, size_t field_size) {
  const void* nul = std::memchr(at, 0, field_size);
  const size_t n = nul ? static_cast<size_t>(static_cast<const uint8_t*>(nul) - at) : field_size;
  return std::string(reinterpret_cast<const char*>(at), n);
}

uint64_t round_up(uint64_t value, uint64_t unit) { return (value + unit - 1) / unit * unit; }

bool power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

SnapshotHeader SnapshotHeader::for_origin(uint64_t origin_size, uint32_t cluster_size, std::string origin_identity) {
  SnapshotHeader h;
  h.cluster_size = cluster_size;
  h.origin_size = origin_size;
  // Rounded up without adding first: origin + cluster - 1 wraps around for
  // origins within a cluster of 2^64, and a wrapped count is a layout that
  // does not cover the origin.
  h.cluster_count = origin_size / cluster_size + (origin_size % cluster_size != 0 ? 1 : 0);
  h.map_offset = kHeaderSize;
  h.data_offset = round_up(h.map_offset + h.cluster_count * 8, cluster_size);
  h.origin_identity = std::move(origin_identity);
  return h;
}

std::string SnapshotHeader::uuid_text() const {
  std::string s;
  for (size_t i = 0; i < uuid.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += fmt::format("{:02x}", uuid[i]);
  }
  return s;
}

void encode_snapshot_header(const SnapshotHeader& h, std::span<uint8_t, SnapshotHeader::kHeaderSize> out) {
  uint8_t* p = out.data();
  std::memset(p, 0, out.size());
  std::memcpy(p, kMagic, sizeof kMagic);
  put32(p + 8, SnapshotHeader::kVersion);
  put32(p + 12, SnapshotHeader::kHeaderSize);
  put32(p + 16, h.cluster_size);
  put32(p + 20, static_cast<uint32_t>(h.state));
  put64(p + 24, h.origin_size);
  put64(p + 32, h.cluster_count);
  put64(p + 40, h.map_offset);
  put64(p + 48, h.data_offset);
  put64(p + 56, static_cast<uint64_t>(h.created_sec));
  put32(p + 64, h.created_nsec);
  std::memcpy(p + 72, h.uuid.data(), h.uuid.size());
  put_text(p + kIdentityAt, SnapshotHeader::kMaxIdentity + 1, h.origin_identity);
  put_text(p + kReasonAt, SnapshotHeader::kMaxReason + 1, h.invalid_reason);
  put64(p + kChecksumAt, fnv1a(p, kChecksumAt));
}

std::string decode_snapshot_header(std::span<const uint8_t, SnapshotHeader::kHeaderSize> in, SnapshotHeader& h) {
  const uint8_t* p = in.data();
  if (std::memcmp(p, kMagic, sizeof kMagic) != 0) return "not an xbbd snapshot store (bad magic)";
  if (get64(p + kChecksumAt) != fnv1a(p, kChecksumAt)) return "header checksum mismatch (the header is corrupt)";
  const uint32_t version = get32(p + 8);
  if (version != SnapshotHeader::kVersion)
    return fmt::format("unsupported store version {} (this xbbd reads version {})", version, SnapshotHeader::kVersion);
  if (get32(p + 12) != SnapshotHeader::kHeaderSize) return "unexpected header size";
  h.cluster_size = get32(p + 16);
  const uint32_t state = get32(p + 20);
  if (state != static_cast<uint32_t>(SnapshotHeader::State::Valid) &&
      state != static_cast<uint32_t>(SnapshotHeader::State::Invalid))
    return fmt::format("unknown snapshot state {}", state);
  h.state = static_cast<SnapshotHeader::State>(state);
  h.origin_size = get64(p + 24);
  h.cluster_count = get64(p + 32);
  h.map_offset = get64(p + 40);
  h.data_offset = get64(p + 48);
  h.created_sec = static_cast<int64_t>(get64(p + 56));
  h.created_nsec = get32(p + 64);
  std::memcpy(h.uuid.data(), p + 72, h.uuid.size());
  h.origin_identity = get_text(p + kIdentityAt, SnapshotHeader::kMaxIdentity + 1);
  h.invalid_reason = get_text(p + kReasonAt, SnapshotHeader::kMaxReason + 1);

  if (!power_of_two(h.cluster_size) || h.cluster_size < kMinSnapshotCluster || h.cluster_size > kMaxSnapshotCluster)
    return fmt::format("bad cluster size {}", h.cluster_size);
  if (h.origin_size == 0 || h.origin_size % 512 != 0) return fmt::format("bad origin size {}", h.origin_size);
  const SnapshotHeader expected = SnapshotHeader::for_origin(h.origin_size, h.cluster_size, "");
  if (h.cluster_count != expected.cluster_count || h.map_offset != expected.map_offset ||
      h.data_offset != expected.data_offset)
    return "inconsistent layout (cluster count, map or data offset)";
  if (h.created_nsec >= 1'000'000'000u) return "bad creation time";
  return "";
}

}  // namespace xbb::storage
