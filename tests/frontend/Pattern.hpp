// Deterministic data for writes: every 512-byte sector is stamped with who
// wrote it, where and which generation, so a misplaced or stale sector is
// told apart from the right one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace xbb::frontend {

inline std::vector<std::byte> pattern(uint64_t writer, uint64_t sector, uint32_t sectors, uint64_t generation) {
  std::vector<std::byte> out(size_t(sectors) * 512);
  for (uint32_t s = 0; s < sectors; ++s) {
    uint64_t x = (writer * 0x9E3779B97F4A7C15ull) ^ ((sector + s) * 0xC2B2AE3D27D4EB4Full) ^ (generation + 1);
    for (size_t i = 0; i < 512; i += 8) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      std::memcpy(out.data() + size_t(s) * 512 + i, &x, 8);
    }
  }
  return out;
}

}  // namespace xbb::frontend
