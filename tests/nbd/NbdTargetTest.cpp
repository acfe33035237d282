// The `nbd:` target syntax (no server needed).
#include <gtest/gtest.h>

#include "storage/nbd/NbdTarget.hpp"
#include "storage/Storage.hpp"

namespace xbb::storage {
namespace {

using namespace std::chrono_literals;

std::string parse_error(const std::string& argument) {
  try {
    NbdTarget::parse(argument);
  } catch (const StorageError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(NbdTarget, DefaultsWithoutSettings) {
  const NbdTarget t = NbdTarget::parse("nbd+unix:///export?socket=/run/nbd.sock");
  EXPECT_EQ(t.uri, "nbd+unix:///export?socket=/run/nbd.sock");
  EXPECT_EQ(t.reconnect_interval, 5s);
  EXPECT_EQ(t.request_timeout, 30s);
  EXPECT_TRUE(t.allow_multi_conn);
  EXPECT_EQ(t.to_string(), "nbd:nbd+unix:///export?socket=/run/nbd.sock#reconnect=5s&timeout=30s");
}

TEST(NbdTarget, Settings) {
  const NbdTarget t = NbdTarget::parse("nbd://host:10809/e#reconnect=250ms&timeout=2m&multi-conn=off");
  EXPECT_EQ(t.uri, "nbd://host:10809/e");
  EXPECT_EQ(t.reconnect_interval, 250ms);
  EXPECT_EQ(t.request_timeout, 120s);
  EXPECT_FALSE(t.allow_multi_conn);
  EXPECT_EQ(t.to_string(), "nbd:nbd://host:10809/e#reconnect=250ms&timeout=120s&multi-conn=off");

  EXPECT_EQ(NbdTarget::parse("nbd://h#reconnect=off").reconnect_interval, 0ms);
  EXPECT_EQ(NbdTarget::parse("nbd://h#timeout=7").request_timeout, 7s);
}

TEST(NbdTarget, BadSettingsSayWhatIsWrong) {
  EXPECT_NE(parse_error("").find("no URI given"), std::string::npos) << parse_error("");
  EXPECT_NE(parse_error("#timeout=1s").find("no URI given"), std::string::npos);
  EXPECT_NE(parse_error("nbd://h#timeout=soon").find("timeout 'soon' is not a duration"), std::string::npos);
  EXPECT_NE(parse_error("nbd://h#timeout=0").find("at least 1ms"), std::string::npos);
  EXPECT_NE(parse_error("nbd://h#timeout=5h").find("not a duration"), std::string::npos);
  EXPECT_NE(parse_error("nbd://h#timeout=99999999999999999999").find("not a duration"), std::string::npos);
  EXPECT_NE(parse_error("nbd://h#reconnect=never").find("reconnect 'never'"), std::string::npos);
  EXPECT_NE(parse_error("nbd://h#reconnect=").find("has no value"), std::string::npos);
  EXPECT_NE(parse_error("nbd://h#reconnect").find("has no value"), std::string::npos);
  EXPECT_NE(parse_error("nbd://h#colour=blue").find("unknown setting 'colour'"), std::string::npos);
  EXPECT_NE(parse_error("nbd://h#multi-conn=maybe").find("'on' or 'off'"), std::string::npos);
  EXPECT_NE(parse_error("nbd://h#timeout=1s&").find("has no value"), std::string::npos);
}

}  // namespace
}  // namespace xbb::storage
