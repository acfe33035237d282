// DeviceStorage on a loop device the test creates (needs root; skipped with
// the reason otherwise).
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <gtest/gtest.h>

#include "StorageTestSupport.hpp"
#include "storage/file/DeviceStorage.hpp"

namespace xbb::storage::test {
namespace {

class LoopDeviceTest : public ::testing::Test {
 protected:
  // False (with why_ set) when no loop device can be made here.
  bool attach(bool read_only) {
    loop_ = LoopDevice::attach(file_.path(), read_only, why_);
    return loop_ != nullptr;
  }
  std::string why_;
  TempFile file_{"/var/tmp", 16 << 20, "loopdev"};
  std::unique_ptr<LoopDevice> loop_;
};

TEST_F(LoopDeviceTest, PropertiesComeFromTheKernel) {
  if (!attach(false)) GTEST_SKIP() << why_;
  auto dev = DeviceStorage::open(loop_->path(), {});
  const Properties& p = dev->properties();
  EXPECT_EQ(p.size_bytes, 16u << 20);
  EXPECT_EQ(p.logical_block_size, 512u);
  EXPECT_GE(p.physical_block_size, 512u);
  EXPECT_FALSE(p.read_only);
  EXPECT_TRUE(p.can_discard) << "loop devices over a hole-punching filesystem support discard";
  EXPECT_GE(p.discard_granularity, 512u);
  EXPECT_FALSE(p.can_secure_discard) << "loop devices have no secure erase";
  EXPECT_EQ(dev->describe(), "dev:" + loop_->path());
}

TEST_F(LoopDeviceTest, DiscardReachesTheBackingFile) {
  if (!attach(false)) GTEST_SKIP() << why_;
  auto dev = DeviceStorage::open(loop_->path(), {});
  auto q = dev->open_queue(4);
  AlignedBuffer data(4 << 20);
  fill_pattern(data.span(), 21);
  ASSERT_EQ(write_at(*q, 4 << 20, data.span()), 4 << 20);
  ASSERT_EQ(flush(*q), 0);
  struct stat before {};
  ASSERT_EQ(::stat(file_.path().c_str(), &before), 0);
  ASSERT_GE(before.st_blocks, (4 << 20) / 512) << "the loop device wrote through to its file";
  ASSERT_EQ(discard_at(*q, 4 << 20, 4 << 20), 0);
  AlignedBuffer back(4 << 20);
  ASSERT_EQ(read_at(*q, 4 << 20, back.span()), 4 << 20);
  EXPECT_TRUE(all_zero(back.span()));
  struct stat after {};
  ASSERT_EQ(::stat(file_.path().c_str(), &after), 0);
  EXPECT_LT(after.st_blocks, before.st_blocks) << "BLKDISCARD on the loop device punches its file";
}

TEST_F(LoopDeviceTest, SecureDiscardIsRefusedAtSubmitWhenUnsupported) {
  if (!attach(false)) GTEST_SKIP() << why_;
  auto dev = DeviceStorage::open(loop_->path(), {});
  auto q = dev->open_queue(1);
  EXPECT_EQ(q->submit({IoOp::SecureDiscard, 0, 4096, nullptr, 0, 1}), -EOPNOTSUPP);
}

TEST_F(LoopDeviceTest, ReadOnlyDeviceIsServedReadOnly) {
  if (!attach(true)) GTEST_SKIP() << why_;
  auto dev = DeviceStorage::open(loop_->path(), {.read_only = false});
  EXPECT_TRUE(dev->properties().read_only) << "BLKROGET said read-only";
  EXPECT_FALSE(dev->properties().can_discard);
  auto q = dev->open_queue(1);
  AlignedBuffer buf(4096);
  iovec v = buf.iov(0, 4096);
  EXPECT_EQ(q->submit({IoOp::Write, 0, 0, &v, 1, 1}), -EROFS);
  EXPECT_EQ(read_at(*q, 0, buf.span()), 4096);
}

TEST_F(LoopDeviceTest, UnalignedBuffersAreRefused) {
  if (!attach(false)) GTEST_SKIP() << why_;
  auto dev = DeviceStorage::open(loop_->path(), {});
  auto q = dev->open_queue(1);
  AlignedBuffer buf(8192);
  iovec v{buf.data() + 8, 4096};
  EXPECT_EQ(q->submit({IoOp::Read, 0, 0, &v, 1, 1}), -EINVAL);
}

TEST(DeviceStorage, RefusesWhatIsNotABlockDevice) {
  TempFile file("/var/tmp", 1 << 20);
  const std::string message = error_of([&] { DeviceStorage::open(file.path(), {}); });
  EXPECT_NE(message.find("is a regular file, not a block device"), std::string::npos) << message;
  EXPECT_NE(message.find("file:PATH"), std::string::npos) << message;
  EXPECT_NE(error_of([] { DeviceStorage::open("/dev/null", {}); }).find("a character device"), std::string::npos);
  EXPECT_NE(error_of([] { DeviceStorage::open("/dev/no-such-disk", {}); }).find("does not exist"),
            std::string::npos);
}

// A writable disk holds the device with O_EXCL, so a second writer (another
// xbbd disk, a mount) is refused; read-only disks claim nothing.
TEST_F(LoopDeviceTest, AWritableDiskClaimsTheDeviceExclusively) {
  if (!attach(false)) GTEST_SKIP() << why_;
  auto first = DeviceStorage::open(loop_->path(), {});
  auto claim = first->claim(true);
  ASSERT_NE(claim, nullptr);
  auto second = DeviceStorage::open(loop_->path(), {});
  try {
    second->claim(true);
    ADD_FAILURE() << "a second writer claimed the device";
  } catch (const StorageInUse& e) {
    EXPECT_NE(std::string(e.what()).find("is in use"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(loop_->path()), std::string::npos) << e.what();
  }
  EXPECT_EQ(second->claim(false), nullptr) << "read-only disks do not claim block devices";
  // I/O still works beside the claim (the claim is a descriptor of its own).
  auto q = first->open_queue(2);
  AlignedBuffer data(4096);
  fill_pattern(data.span(), 5);
  EXPECT_EQ(write_at(*q, 0, data.span()), 4096);
  // Released with the claim object, not with the storage.
  claim.reset();
  EXPECT_NE(second->claim(true), nullptr);
}

}  // namespace
}  // namespace xbb::storage::test
