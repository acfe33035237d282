#include "ring/protocol/Abi.hpp"

#include <gtest/gtest.h>

namespace xbb::ring {
namespace {

TEST(Abi, ParsesTheProtocolKey) {
  EXPECT_EQ(parse_protocol(""), Abi::Native);
  EXPECT_EQ(parse_protocol("x86_32-abi"), Abi::X86_32);
  EXPECT_EQ(parse_protocol("x86_64-abi"), Abi::X86_64);
}

TEST(Abi, RejectsUnknownProtocols) {
  EXPECT_EQ(parse_protocol("x86_16-abi"), std::nullopt);
  EXPECT_EQ(parse_protocol("X86_32-ABI"), std::nullopt);
  EXPECT_EQ(parse_protocol("x86_32-abi "), std::nullopt);
  EXPECT_EQ(parse_protocol(std::string_view("x86_32-abi\0", 11)), std::nullopt);
  EXPECT_EQ(parse_protocol("native"), std::nullopt);
#if defined(__x86_64__) || defined(__i386__)
  // Only an Arm host may hear "arm-abi" as its native protocol.
  EXPECT_EQ(parse_protocol("arm-abi"), std::nullopt);
#endif
}

TEST(Abi, NativeResolvesToTheHostLayout) {
  EXPECT_EQ(wire_layout(Abi::X86_32), WireLayout::X86_32);
  EXPECT_EQ(wire_layout(Abi::X86_64), WireLayout::X86_64);
#if defined(__x86_64__)
  EXPECT_EQ(wire_layout(Abi::Native), WireLayout::X86_64);
#endif
}

TEST(Abi, NamesForLogs) {
  EXPECT_EQ(to_string(Abi::Native), "native");
  EXPECT_EQ(to_string(Abi::X86_32), "x86_32-abi");
  EXPECT_EQ(to_string(Abi::X86_64), "x86_64-abi");
}

}  // namespace
}  // namespace xbb::ring
