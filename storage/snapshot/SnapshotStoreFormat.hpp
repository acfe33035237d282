// The on-disk layout of a snapshot backing store (SnapshotStore.hpp), kept
// apart from the I/O so it can be read, tested and fuzzed on its own.
//
//   offset 0           header, kHeaderSize bytes (below), little-endian
//   map_offset         the cluster map: one u64 per origin cluster; 0 means
//                      "not copied", anything else is the byte offset in the
//                      store of that cluster's copy (cluster_size bytes)
//   data_offset        copied clusters, appended in copy order; data_offset is
//                      the map's end rounded up to a cluster, so every copy is
//                      cluster-aligned in the file
//
// Header fields (byte offset: field):
//     0: magic "XBBSNAP\0"        8: u32 version (1)      12: u32 header size
//    16: u32 cluster size        20: u32 state (1 valid, 2 invalid)
//    24: u64 origin size (bytes) 32: u64 cluster count   40: u64 map offset
//    48: u64 data offset         56: i64 creation time (s since the epoch)
//    64: u32 creation time (ns)  72: u8[16] UUID
//    88: char[512] origin identity (Storage::describe() of the origin), NUL padded
//   600: char[256] why the snapshot was invalidated, NUL padded
//  4088: u64 FNV-1a 64 of bytes [0, 4088)
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace xbb::storage {

struct SnapshotHeader {
  static constexpr uint32_t kVersion = 1;
  static constexpr uint32_t kHeaderSize = 4096;
  static constexpr size_t kMaxIdentity = 511;  // one byte stays NUL
  static constexpr size_t kMaxReason = 255;
  enum class State : uint32_t { Valid = 1, Invalid = 2 };

  uint32_t cluster_size = 0;
  State state = State::Valid;
  uint64_t origin_size = 0;
  uint64_t cluster_count = 0;
  uint64_t map_offset = 0;
  uint64_t data_offset = 0;
  int64_t created_sec = 0;
  uint32_t created_nsec = 0;
  std::array<uint8_t, 16> uuid{};
  std::string origin_identity;
  std::string invalid_reason;

  // The layout for a new store: map right after the header, data after the map.
  static SnapshotHeader for_origin(uint64_t origin_size, uint32_t cluster_size, std::string origin_identity);
  std::string uuid_text() const;  // 8-4-4-4-12 lowercase hex
};

// Minimum and maximum cluster sizes a store accepts.
inline constexpr uint32_t kMinSnapshotCluster = 4096;
inline constexpr uint32_t kMaxSnapshotCluster = 64u << 20;

// Serialises into exactly kHeaderSize bytes (identity and reason truncated to
// their fields).
void encode_snapshot_header(const SnapshotHeader& header, std::span<uint8_t, SnapshotHeader::kHeaderSize> out);

// Parses and checks everything that can be checked without the rest of the
// file (magic, version, checksum, cluster size, a consistent layout). Returns ""
// and fills `out`, or a reason fit for an error message.
std::string decode_snapshot_header(std::span<const uint8_t, SnapshotHeader::kHeaderSize> in, SnapshotHeader& out);

}  // namespace xbb::storage
