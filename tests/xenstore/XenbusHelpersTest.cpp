// The xenbus helpers against hostile input: everything here can come from a
// guest, a confused toolstack or a typo on the command line.
#include <cerrno>
#include <memory>

#include <gtest/gtest.h>

#include "tests/sim/xenstore/SimXenStore.hpp"
#include "xenstore/Xenbus.hpp"

namespace xbb::xs {
namespace {

// ------------------------------------------------------------ parse_uint

TEST(ParseUint, AcceptsPlainDecimal) {
  EXPECT_EQ(parse_uint("0"), 0u);
  EXPECT_EQ(parse_uint("42"), 42u);
  EXPECT_EQ(parse_uint("007"), 7u);
  EXPECT_EQ(parse_uint("18446744073709551615"), UINT64_MAX);
}

TEST(ParseUint, RejectsGarbage) {
  for (const char* bad : {"", " 1", "1 ", "+1", "-1", "0x10", "1e3", "12a", "١", "1\n", "\t"}) {
    EXPECT_EQ(parse_uint(bad), std::nullopt) << "'" << bad << "'";
  }
  EXPECT_EQ(parse_uint(std::string_view("1\0" "2", 3)), std::nullopt);
}

TEST(ParseUint, RejectsOverflowAndValuesAboveMax) {
  EXPECT_EQ(parse_uint("18446744073709551616"), std::nullopt);
  EXPECT_EQ(parse_uint("99999999999999999999999999"), std::nullopt);
  EXPECT_EQ(parse_uint("256", 255), std::nullopt);
  EXPECT_EQ(parse_uint("255", 255), 255u);
  EXPECT_EQ(parse_uint("0", 0), 0u);
  EXPECT_EQ(parse_uint("1", 0), std::nullopt);
}

TEST(ParseBool, ZeroIsFalseAnyOtherNumberTrue) {
  EXPECT_EQ(parse_bool("0"), false);
  EXPECT_EQ(parse_bool("1"), true);
  EXPECT_EQ(parse_bool("2"), true);
  EXPECT_EQ(parse_bool("true"), std::nullopt);
  EXPECT_EQ(parse_bool(""), std::nullopt);
  EXPECT_EQ(parse_bool("-1"), std::nullopt);
}

// ----------------------------------------------------------- xenbus state

class XenbusStore : public ::testing::Test {
 protected:
  std::shared_ptr<sim::SimStore> store = std::make_shared<sim::SimStore>();
  sim::SimXenStore xs{store, 0};
};

TEST_F(XenbusStore, ReadStateAcceptsEveryDefinedState) {
  for (int s = 0; s <= 8; ++s) {
    xs.write(kNoTransaction, "/dev/state", std::to_string(s));
    EXPECT_EQ(read_state(xs, kNoTransaction, "/dev"), static_cast<XenbusState>(s));
  }
}

TEST_F(XenbusStore, ReadStateRejectsHostileValues) {
  for (const std::string& bad : std::vector<std::string>{"abc", "99", "9", "", "-1", "+4", "4 ", " 4", "0x4", "4\n",
                                "99999999999999999999999999999", std::string("4\0", 2),
                                std::string(4096, '4')}) {
    xs.write(kNoTransaction, "/dev/state", bad);
    EXPECT_EQ(read_state(xs, kNoTransaction, "/dev"), std::nullopt) << "'" << bad << "'";
  }
}

TEST_F(XenbusStore, MissingStateIsNullopt) {
  EXPECT_EQ(read_state(xs, kNoTransaction, "/nowhere"), std::nullopt);
}

TEST_F(XenbusStore, WriteStateWritesTheDecimalNumber) {
  write_state(xs, kNoTransaction, "/dev", XenbusState::InitWait);
  EXPECT_EQ(xs.read(kNoTransaction, "/dev/state"), "2");
  write_state(xs, kNoTransaction, "/dev", XenbusState::Closed);
  EXPECT_EQ(xs.read(kNoTransaction, "/dev/state"), "6");
  EXPECT_EQ(read_state(xs, kNoTransaction, "/dev"), XenbusState::Closed);
}

TEST_F(XenbusStore, ReadUintAndBoolRejectGarbageFromTheStore) {
  xs.write(kNoTransaction, "/k/ring-ref", "4294967296");
  EXPECT_EQ(read_uint(xs, kNoTransaction, "/k/ring-ref", UINT32_MAX), std::nullopt);
  xs.write(kNoTransaction, "/k/ring-ref", "123");
  EXPECT_EQ(read_uint(xs, kNoTransaction, "/k/ring-ref", UINT32_MAX), 123u);
  EXPECT_EQ(read_uint(xs, kNoTransaction, "/k/missing"), std::nullopt);
  xs.write(kNoTransaction, "/k/feature", "yes");
  EXPECT_EQ(read_bool(xs, kNoTransaction, "/k/feature"), std::nullopt);
  xs.write(kNoTransaction, "/k/feature", "1");
  EXPECT_EQ(read_bool(xs, kNoTransaction, "/k/feature"), true);
}

TEST(XenbusStateNames, AreReadable) {
  EXPECT_EQ(to_string(XenbusState::Connected), "Connected");
  EXPECT_EQ(to_string(XenbusState::InitWait), "InitWait");
  EXPECT_EQ(to_string(static_cast<XenbusState>(42)), "Invalid(42)");
  EXPECT_EQ(parse_state("4"), XenbusState::Connected);
}

TEST(PrintableExcerpt, EscapesAndTruncates) {
  EXPECT_EQ(printable_excerpt("ok"), "ok");
  EXPECT_EQ(printable_excerpt(std::string("a\0\n", 3)), "a\\x00\\x0a");
  EXPECT_EQ(printable_excerpt(std::string(100, 'x'), 4), "xxxx...");
}

// ---------------------------------------------------------- backend paths

TEST(BackendPath, ParsesRelativeAndAbsoluteForms) {
  auto bp = parse_backend_path("backend/vbd/3/51712");
  ASSERT_TRUE(bp);
  EXPECT_EQ(bp->type, "vbd");
  EXPECT_EQ(bp->frontend_domid, 3);
  EXPECT_EQ(bp->devid, 51712u);
  EXPECT_EQ(bp->path, "backend/vbd/3/51712");

  auto abs = parse_backend_path("/local/domain/0/backend/vbd3/32751/4294967295");
  ASSERT_TRUE(abs);
  EXPECT_EQ(abs->type, "vbd3");
  EXPECT_EQ(abs->frontend_domid, 32751);
  EXPECT_EQ(abs->devid, 4294967295u);
  EXPECT_EQ(abs->path, "/local/domain/0/backend/vbd3/32751/4294967295");
  EXPECT_TRUE(parse_backend_path("backend/vbd/0/0"));
}

TEST(BackendPath, RejectsEverythingElse) {
  for (const char* bad : {
           "", "backend", "backend/vbd", "backend/vbd/3", "backend/vbd/3/51712/state", "backend/vbd/3/51712/",
           "/backend/vbd/3/51712", "backend//3/51712", "backend/vbd//51712", "backend/vbd/+3/51712",
           "backend/vbd/-3/51712", "backend/vbd/03/51712", "backend/vbd/3/051712", "backend/vbd/3/0x10",
           "backend/vbd/32752/51712",                      // DOMID_FIRST_RESERVED
           "backend/vbd/65535/51712",                      // DOMID_INVALID
           "backend/vbd/99999999999999999999/1",           // overflow
           "backend/vbd/3/4294967296",                     // devid overflow
           "backend/VBD/3/51712", "backend/v b d/3/51712", "backend/vbd/ 3/51712", "Backend/vbd/3/51712",
           "/local/domain/backend/vbd/3/51712", "/local/domain/x/backend/vbd/3/51712",
           "/local/domain/0/frontend/vbd/3/51712", "/local/domain/0/backend/vbd/3/51712/x",
           "local/domain/0/backend/vbd/3/51712", "/local/domain/32752/backend/vbd/3/51712",
           "/local/domain/00/backend/vbd/3/51712"}) {
    EXPECT_EQ(parse_backend_path(bad), std::nullopt) << bad;
  }
  EXPECT_EQ(parse_backend_path(std::string_view("backend/vbd/3/5\0" "1712", 16)), std::nullopt);
}

TEST(BackendPath, EventPathsSplitIntoDeviceAndSubpath) {
  auto ev = parse_backend_event_path("backend/vbd/3/51712/state");
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->device.path, "backend/vbd/3/51712");
  EXPECT_EQ(ev->device.frontend_domid, 3);
  EXPECT_EQ(ev->subpath, "state");
  auto dir = parse_backend_event_path("/local/domain/0/backend/vbd/3/51712");
  ASSERT_TRUE(dir);
  EXPECT_EQ(dir->subpath, "");
  auto deep = parse_backend_event_path("backend/vbd/3/51712/queue-0/ring-ref");
  ASSERT_TRUE(deep);
  EXPECT_EQ(deep->subpath, "queue-0/ring-ref");
  EXPECT_EQ(parse_backend_event_path("backend/vbd/3"), std::nullopt);
  EXPECT_EQ(parse_backend_event_path("backend/vbd/3/51712/"), std::nullopt);
  EXPECT_EQ(parse_backend_event_path("backend/vbd/3/51712//x"), std::nullopt);
}

TEST(FrontendPath, OnlyTheExactExpectedPathIsAccepted) {
  EXPECT_TRUE(is_expected_frontend("/local/domain/3/device/vbd/51712", 3, 51712, "vbd"));
  // Xen >= 4.19 tap disks: backend/vbd3, frontend still device/vbd.
  EXPECT_TRUE(is_expected_frontend("/local/domain/3/device/vbd/51712", 3, 51712, "vbd3"));
  EXPECT_EQ(expected_frontend_path(7, 768, "vbd3"), "/local/domain/7/device/vbd/768");
  for (const char* bad : {"/local/domain/4/device/vbd/51712",  // another domain's device
                          "/local/domain/3/device/vbd/51713", "/local/domain/03/device/vbd/51712",
                          "/local/domain/3/device/vbd/51712/", "/local/domain/3/device/vbd3/51712",
                          "/local/domain/3/device/vif/51712", "local/domain/3/device/vbd/51712",
                          "/local/domain/3/device/vbd/51712/../../../4/device/vbd/1", "",
                          "/local/domain/0/backend/vbd/3/51712"}) {
    EXPECT_FALSE(is_expected_frontend(bad, 3, 51712, "vbd")) << bad;
  }
}

// ---------------------------------------------------------------- vdev

TEST(Vdev, KnownNamesMapToXensNumbers) {
  EXPECT_EQ(parse_vdev("xvda"), 51712u);
  EXPECT_EQ(parse_vdev("xvda1"), 51713u);
  EXPECT_EQ(parse_vdev("xvdb"), 51728u);
  EXPECT_EQ(parse_vdev("xvdp15"), (202u << 8) | (15u << 4) | 15u);
  EXPECT_EQ(parse_vdev("xvdq"), (1u << 28) | (16u << 8));           // 17th disk: extended
  EXPECT_EQ(parse_vdev("xvda16"), (1u << 28) | 16u);                // 16th partition: extended
  EXPECT_EQ(parse_vdev("xvdaa"), (1u << 28) | (26u << 8));
  EXPECT_EQ(parse_vdev("xvdaa255"), (1u << 28) | (26u << 8) | 255u);
  EXPECT_EQ(parse_vdev("d0p0"), 51712u);
  EXPECT_EQ(parse_vdev("d100p3"), (1u << 28) | (100u << 8) | 3u);
  EXPECT_EQ(parse_vdev("hda"), 768u);
  EXPECT_EQ(parse_vdev("hdb1"), (3u << 8) | (1u << 6) | 1u);
  EXPECT_EQ(parse_vdev("hdc"), 22u << 8);
  EXPECT_EQ(parse_vdev("hdd63"), (22u << 8) | (1u << 6) | 63u);
  EXPECT_EQ(parse_vdev("sda"), 2048u);
  EXPECT_EQ(parse_vdev("sdb2"), (8u << 8) | (1u << 4) | 2u);
  EXPECT_EQ(parse_vdev("51712"), 51712u);
  EXPECT_EQ(parse_vdev("0"), 0u);
  EXPECT_EQ(parse_vdev("2147483647"), 2147483647u);
}

TEST(Vdev, RejectsMalformedNames) {
  for (const char* bad : {"", "xvd", "xvdA", "XVDA", "xvda0", "xvda01", "xvda256", "xvda-1", "xvd1",
                          " xvda", "xvda ", "hde", "hda64", "sdq", "sda16", "sd", "hd", "vda",
                          "2147483648", "-1", "+5", "0x10", "051712", "d1", "dp1", "d1p", "d1p256",
                          "d1048576p0", "xvdbzzzz",  // disk number beyond 2^20
                          "xvda1x"}) {
    EXPECT_EQ(parse_vdev(bad), std::nullopt) << bad;
  }
}

TEST(Vdev, NamesRoundTrip) {
  for (const char* name : {"xvda", "xvdb3", "xvdp15", "xvdq", "xvda16", "xvdaa", "xvdzz255", "hda", "hdb5",
                           "hdc", "hdd63", "sda", "sdp15"}) {
    auto id = parse_vdev(name);
    ASSERT_TRUE(id) << name;
    EXPECT_EQ(vdev_name(*id), name);
  }
}

TEST(Vdev, EveryIdRoundTripsThroughItsName) {
  // Ids that are not a canonical encoding render as decimal; either way the
  // name parses back to the same id.
  for (uint32_t id : {0u, 1u, 767u, 768u, 2048u, 51712u, 51727u, 51967u, 0xcaffu, 0x10000u, (1u << 28),
                      (1u << 28) | 0x0f0fu, (1u << 28) | (16u << 8) | 1u, (1u << 28) | (0xfffffu << 8) | 0xffu,
                      (2u << 28), 0x7fffffffu}) {
    EXPECT_EQ(parse_vdev(vdev_name(id)), id) << id << " -> " << vdev_name(id);
  }
  EXPECT_EQ(vdev_name(0x80000000u), "2147483648");
}

}  // namespace
}  // namespace xbb::xs
