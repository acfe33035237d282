// The target syntax: every form, and every error an administrator can meet.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <gtest/gtest.h>

#include "StorageTestSupport.hpp"
#include "storage/SizeParser.hpp"
#include "storage/Target.hpp"

namespace xbb::storage::test {
namespace {

TEST(SizeParser, AcceptsDigitsWithBinarySuffixes) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("512"), 512u);
  EXPECT_EQ(parse_size("4k"), 4096u);
  EXPECT_EQ(parse_size("64M"), 64ull << 20);
  EXPECT_EQ(parse_size("2G"), 2ull << 30);
  EXPECT_EQ(parse_size("3t"), 3ull << 40);
  EXPECT_EQ(parse_size("18446744073709551615"), UINT64_MAX);
}

TEST(SizeParser, RejectsEverythingElse) {
  for (const char* bad : {"", "K", "12Q", "-1", "1.5G", " 1M", "1M ", "1MB", "0x10", "18446744073709551616",
                          "16777216T", "99999999999999999999K"})
    EXPECT_EQ(parse_size(bad), std::nullopt) << bad;
}

std::string target_error(const std::string& target, OpenOptions options = {}) {
  return error_of([&] { open_target(target, options); });
}

#define EXPECT_ERROR_CONTAINS(target, text)                                                   \
  do {                                                                                        \
    const std::string message_ = target_error(target);                                        \
    EXPECT_NE(message_.find(text), std::string::npos) << "target '" << (target) << "' gave: " \
                                                      << (message_.empty() ? "no error" : message_); \
  } while (0)

TEST(Target, PlainPathToARegularFileIsAFile) {
  TempFile file("/var/tmp", 1 << 20);
  auto storage = open_target(file.path(), {});
  EXPECT_EQ(storage->describe(), "file:" + file.path());
  EXPECT_EQ(storage->properties().size_bytes, 1u << 20);
}

TEST(Target, PlainPathMayContainAColon) {
  TempDir dir;
  const std::string path = dir.path() + "/guest:disk.img";
  const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
  ::close(fd);
  EXPECT_EQ(open_target(path, {})->describe(), "file:" + path);
}

TEST(Target, PlainPathToABlockDeviceIsADevice) {
  TempFile file("/var/tmp", 1 << 20, "tgtloop");
  std::string why;
  auto loop = LoopDevice::attach(file.path(), false, why);
  if (!loop) GTEST_SKIP() << why;
  EXPECT_EQ(open_target(loop->path(), {})->describe(), "dev:" + loop->path());
  EXPECT_EQ(open_target("dev:" + loop->path(), {})->describe(), "dev:" + loop->path());
  EXPECT_ERROR_CONTAINS("file:" + loop->path(), "is a block device, not a regular file");
}

TEST(Target, ExplicitFileAndOptionsArePassedThrough) {
  TempFile file("/var/tmp", 1 << 20);
  auto storage = open_target("file:" + file.path(), {.read_only = true});
  EXPECT_EQ(storage->describe(), "file:" + file.path());
  EXPECT_TRUE(storage->properties().read_only);
}

TEST(Target, RamForms) {
  EXPECT_EQ(open_target("ram:64M", {})->properties().size_bytes, 64u << 20);
  EXPECT_EQ(open_target("ram:1048576", {})->describe(), "ram:1M");
  EXPECT_TRUE(open_target("ram:1M", {.read_only = true})->properties().read_only);

  TempFile image("/var/tmp", 1536, "img");
  EXPECT_EQ(open_target("ram:1M:" + image.path(), {})->properties().size_bytes, 1u << 20);
  EXPECT_EQ(open_target("ram::" + image.path(), {})->properties().size_bytes, 1536u);
  EXPECT_EQ(open_target("ram:auto:" + image.path(), {})->properties().size_bytes, 1536u);
}

TEST(Target, RamErrors) {
  EXPECT_ERROR_CONTAINS("ram:", "no size given");
  EXPECT_ERROR_CONTAINS("ram:auto", "no size given");
  EXPECT_ERROR_CONTAINS("ram:12Q", "size '12Q' is not a size");
  EXPECT_ERROR_CONTAINS("ram:0", "must not be zero");
  EXPECT_ERROR_CONTAINS("ram:1000", "not a multiple of 512");
  EXPECT_ERROR_CONTAINS("ram:1M:", "image path after the second ':' is empty");
  EXPECT_ERROR_CONTAINS("ram:1M:/no/such/image", "'/no/such/image' does not exist");
  TempFile big("/var/tmp", 8192, "big");
  EXPECT_ERROR_CONTAINS("ram:4K:" + big.path(), "is larger than the disk size 4K");
  TempFile empty("/var/tmp", 0, "empty");
  EXPECT_ERROR_CONTAINS("ram::" + empty.path(), "is empty");
  TempDir dir;
  EXPECT_ERROR_CONTAINS("ram:1M:" + dir.path(), "a directory");
}

TEST(Target, PathErrors) {
  EXPECT_ERROR_CONTAINS("", "empty target");
  EXPECT_ERROR_CONTAINS("/no/such/disk.img", "'/no/such/disk.img' does not exist");
  EXPECT_ERROR_CONTAINS("file:", "no path given");
  EXPECT_ERROR_CONTAINS("dev:", "no path given");
  EXPECT_ERROR_CONTAINS("nosuchkind:whatever", "unknown storage kind 'nosuchkind'");
  EXPECT_ERROR_CONTAINS("nosuchkind:whatever", "known kinds: dev, file, nbd, ram");
  TempDir dir;
  EXPECT_ERROR_CONTAINS(dir.path(), "is a directory; expected a disk image file or a block device");
  EXPECT_ERROR_CONTAINS("/dev/null", "is a character device");
  const std::string fifo = dir.path() + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_ERROR_CONTAINS(fifo, "is a FIFO");
  TempFile file("/var/tmp", 1 << 20);
  EXPECT_ERROR_CONTAINS("dev:" + file.path(), "is a regular file, not a block device");
  TempFile odd("/var/tmp", 1000, "odd");
  EXPECT_ERROR_CONTAINS(odd.path(), "is not a multiple of 512");
}

TEST(Target, RegisteredKindsAreOpenedByPrefix) {
  std::string seen_argument;
  OpenOptions seen_options;
  register_kind("test-kind", [&](const std::string& argument, const OpenOptions& options) {
    seen_argument = argument;
    seen_options = options;
    return open_target("ram:1M", options);
  });
  auto storage = open_target("test-kind:host:10809/export", {.read_only = true, .direct_io = true});
  EXPECT_EQ(seen_argument, "host:10809/export") << "only the first ':' selects the kind";
  EXPECT_TRUE(seen_options.read_only);
  EXPECT_TRUE(seen_options.direct_io);
  EXPECT_EQ(storage->properties().size_bytes, 1u << 20);
  const auto kinds = registered_kinds();
  for (const char* kind : {"dev", "file", "ram", "test-kind"})
    EXPECT_NE(std::find(kinds.begin(), kinds.end(), kind), kinds.end()) << kind;
  EXPECT_TRUE(std::is_sorted(kinds.begin(), kinds.end()));

  register_kind("test-null", [](const std::string&, const OpenOptions&) { return std::unique_ptr<Storage>(); });
  EXPECT_ERROR_CONTAINS("test-null:x", "returned nothing");
  EXPECT_THROW(register_kind("Bad Name", [](const std::string&, const OpenOptions&) {
                 return std::unique_ptr<Storage>();
               }),
               std::invalid_argument);
  EXPECT_THROW(register_kind("", {}), std::invalid_argument);
  EXPECT_THROW(register_kind("nofactory", {}), std::invalid_argument);
}

}  // namespace
}  // namespace xbb::storage::test
