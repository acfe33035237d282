#include "ring/protocol/RingGeometry.hpp"

#include <gtest/gtest.h>

#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>

namespace xbb::ring {
namespace {

TEST(RingGeometry, EntriesPerOrderForEveryAbi) {
  const uint32_t expected[] = {32, 64, 128, 256, 512, 1024};
  for (Abi abi : {Abi::Native, Abi::X86_32, Abi::X86_64}) {
    for (unsigned order = 0; order <= kMaxRingPageOrder; ++order) {
      EXPECT_EQ(ring_entries_for_order(abi, order), expected[order])
          << to_string(abi) << " order " << order;
    }
  }
}

TEST(RingGeometry, NativeMatchesTheHeaderMacro) {
  EXPECT_EQ(ring_entries(Abi::Native, 1), __CONST_RING_SIZE(blkif, 4096));
  EXPECT_EQ(ring_entries(Abi::Native, 3), __CONST_RING_SIZE(blkif, 3 * 4096));
  EXPECT_EQ(ring_entries(Abi::Native, 16), __CONST_RING_SIZE(blkif, 16 * 4096));
  EXPECT_EQ(ring_entries(Abi::Native, 32), __CONST_RING_SIZE(blkif, 32 * 4096));
}

TEST(RingGeometry, ComputedFromEntrySizeNotAssumed) {
  // 3 pages: (12288 - 64) / 108 = 113 and / 112 = 109, both round to 64.
  EXPECT_EQ(ring_entries(Abi::X86_32, 3), 64u);
  EXPECT_EQ(ring_entries(Abi::X86_64, 3), 64u);
  EXPECT_EQ(entry_bytes(Abi::X86_32), 108u);
  EXPECT_EQ(entry_bytes(Abi::X86_64), 112u);
  EXPECT_EQ(response_bytes(Abi::X86_32), 12u);
  EXPECT_EQ(response_bytes(Abi::X86_64), 16u);
  EXPECT_EQ(round_down_power_of_two(0), 0u);
  EXPECT_EQ(round_down_power_of_two(1), 1u);
  EXPECT_EQ(round_down_power_of_two(37), 32u);
  EXPECT_EQ(round_down_power_of_two(64), 64u);
}

TEST(RingGeometry, RejectsUnusableSizes) {
  EXPECT_EQ(ring_entries(Abi::Native, 0), 0u);
  EXPECT_EQ(ring_entries(Abi::Native, kMaxRingPages + 1), 0u);
  EXPECT_EQ(ring_entries_for_order(Abi::Native, kMaxRingPageOrder + 1), 0u);
  EXPECT_EQ(ring_entries_for_order(Abi::X86_32, 31), 0u);
}

}  // namespace
}  // namespace xbb::ring
