// What an administrator does to a running disk, in the simulated host: pause
// and resume (on the same or a new target), online resize (noticed by the
// size watcher or asked for), and one owner per image (a second writer is
// refused, readers share, a local migration's two domains of one VM share).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/backend/DaemonHarness.hpp"
#include "tests/backend/Polling.hpp"
#include "tests/frontend/Pattern.hpp"
#include "xenstore/XenbusState.hpp"

namespace xbb::backendtest {
namespace {

using frontend::BlkCompletion;
using frontend::BlkRequest;
using frontend::VbdSpec;
using xs::XenbusState;
using Clock = std::chrono::steady_clock;

constexpr auto kHangGuard = 10s;
constexpr uint64_t kDiskBytes = 16ull << 20;

template <class Pred>
bool eventually(Pred done) {
  return poll_until(done, kHangGuard, 5ms);
}

std::vector<std::byte> file_bytes(const std::string& path, uint64_t offset, size_t length) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::byte> out(length);
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(length));
  return out;
}

backend::DaemonOptions options_with_size_checks() {
  auto o = default_options();
  o.size_check_interval = 20ms;  // how soon growth is noticed; nothing here waits on it by time
  return o;
}

class OperationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    guest_ = h_.world().add_guest(3);
    spec_.domid = 3;
    spec_.target = image_.path();
    h_.toolstack().add_vbd(spec_);
    disk_ = guest_->disk(spec_.devid);
    ASSERT_NO_THROW(disk_->connect());
  }
  nlohmann::json command(const std::string& name, const std::string& target = "") {
    nlohmann::json request{{"command", name}, {"device", "3/xvda"}};
    if (!target.empty()) request["target"] = target;
    return h_.command(request);
  }
  std::string backend_node(const std::string& node) {
    return h_.toolstack().xs().read(xs::kNoTransaction, disk_->backend_path() + "/" + node).value_or("");
  }

  DaemonHarness h_{options_with_size_checks()};
  TempFile image_{kDiskBytes};
  VbdSpec spec_;
  std::unique_ptr<frontend::InProcessGuest> guest_;
  std::unique_ptr<frontend::SoftBlkfront> disk_;
};

TEST_F(OperationsTest, PausedDiskHoldsTheGuestsRequestsAndResumeAnswersThem) {
  ASSERT_EQ(disk_->write(0, frontend::pattern(1, 0, 8, 0)), 0);
  auto paused = command("pause");
  ASSERT_TRUE(paused.value("ok", false)) << paused.dump();
  EXPECT_EQ(h_.device_stats("3/51712").value("phase", ""), "paused");
  EXPECT_EQ(h_.device_stats("3/51712").value("mapped_grant_pages", 1), 0) << "a paused disk keeps no ring mapped";
  EXPECT_EQ(disk_->backend_state(), XenbusState::Connected) << "pausing is not closing";
  EXPECT_EQ(backend_node("xbbd/paused"), "1") << "recorded for a restarted xbbd";

  // Requests made while paused wait: none is answered, none fails.
  BlkRequest write;
  write.kind = BlkRequest::Kind::Write;
  write.sector = 8;
  write.data = frontend::pattern(2, 8, 8, 0);
  ASSERT_TRUE(disk_->submit(write).has_value());
  EXPECT_TRUE(disk_->poll(200ms).empty()) << "a paused disk answered a request";
  EXPECT_EQ(disk_->in_flight(), 1u);

  auto again = command("pause");
  EXPECT_TRUE(again.value("ok", false)) << "pausing a paused disk is not an error: " << again.dump();
  auto resumed = command("resume");
  ASSERT_TRUE(resumed.value("ok", false)) << resumed.dump();
  std::vector<BlkCompletion> done;
  ASSERT_TRUE(eventually([&] {
    for (auto& c : disk_->poll(10ms)) done.push_back(c);
    return !done.empty();
  }));
  EXPECT_EQ(done[0].status, 0);
  EXPECT_EQ(file_bytes(image_.path(), 8 * 512, 8 * 512), frontend::pattern(2, 8, 8, 0));
  EXPECT_EQ(backend_node("xbbd/paused"), "");
  EXPECT_TRUE(disk_->violations().empty());

  auto not_paused = command("resume");
  EXPECT_FALSE(not_paused.value("ok", true));
  EXPECT_NE(not_paused.value("error", "").find("not paused"), std::string::npos) << not_paused.dump();
}

TEST_F(OperationsTest, ResumeOnACopyServesTheCopyFromThen) {
  ASSERT_EQ(disk_->write(0, frontend::pattern(1, 0, 8, 0)), 0);
  ASSERT_TRUE(command("pause").value("ok", false));
  const std::string copy = image_.path() + ".copy";
  std::filesystem::copy_file(image_.path(), copy);
  TempFile smaller(kDiskBytes / 2);

  auto refused = command("resume", smaller.path());
  EXPECT_FALSE(refused.value("ok", true));
  EXPECT_NE(refused.value("error", "").find("smaller than the disk"), std::string::npos) << refused.dump();
  EXPECT_EQ(h_.device_stats("3/51712").value("phase", ""), "paused") << "a refused target leaves it paused";
  auto missing = command("resume", "/nonexistent/disk.img");
  EXPECT_FALSE(missing.value("ok", true)) << missing.dump();

  auto resumed = command("resume", copy);
  ASSERT_TRUE(resumed.value("ok", false)) << resumed.dump();
  EXPECT_EQ(backend_node("params"), copy) << "the next xbbd must find the disk where it now lives";
  std::vector<std::byte> out(8 * 512);
  ASSERT_EQ(disk_->read(0, out), 0);
  EXPECT_EQ(out, frontend::pattern(1, 0, 8, 0));
  ASSERT_EQ(disk_->write(16, frontend::pattern(3, 16, 8, 0)), 0);
  EXPECT_EQ(file_bytes(copy, 16 * 512, 8 * 512), frontend::pattern(3, 16, 8, 0));
  EXPECT_NE(file_bytes(image_.path(), 16 * 512, 8 * 512), frontend::pattern(3, 16, 8, 0))
      << "a write after the move reached the old image";
  EXPECT_TRUE(disk_->violations().empty());
  ::unlink(copy.c_str());
}

TEST_F(OperationsTest, AGrownImageReachesTheGuestWithoutAReboot) {
  const uint64_t old_sectors = disk_->backend().sectors;
  ASSERT_EQ(old_sectors, kDiskBytes / 512);
  ASSERT_EQ(::truncate(image_.path().c_str(), static_cast<off_t>(2 * kDiskBytes)), 0);
  // The size watcher notices and announces it: sectors, then Connected again.
  ASSERT_TRUE(eventually([&] { return backend_node("sectors") == std::to_string(2 * kDiskBytes / 512); }))
      << backend_node("sectors");
  EXPECT_EQ(disk_->backend_state(), XenbusState::Connected);
  EXPECT_EQ(disk_->refresh_capacity(), 2 * kDiskBytes / 512);
  // The new space is usable.
  const uint64_t beyond = old_sectors + 64;
  ASSERT_EQ(disk_->write(beyond, frontend::pattern(4, beyond, 8, 0)), 0);
  EXPECT_EQ(file_bytes(image_.path(), beyond * 512, 8 * 512), frontend::pattern(4, beyond, 8, 0));

  // xbbctl resize after a growth does the same, and says nothing changed otherwise.
  ASSERT_EQ(::truncate(image_.path().c_str(), static_cast<off_t>(3 * kDiskBytes)), 0);
  auto resized = command("resize");
  EXPECT_TRUE(resized.value("ok", false)) << resized.dump();
  EXPECT_EQ(backend_node("sectors"), std::to_string(3 * kDiskBytes / 512));
  EXPECT_TRUE(disk_->violations().empty());
}

TEST_F(OperationsTest, AShrunkImageIsRefusedAndTheDiskKeepsItsSize) {
  ASSERT_EQ(::truncate(image_.path().c_str(), static_cast<off_t>(kDiskBytes / 2)), 0);
  auto resized = command("resize");
  EXPECT_FALSE(resized.value("ok", true));
  EXPECT_NE(resized.value("error", "").find("never shrinks"), std::string::npos) << resized.dump();
  EXPECT_EQ(backend_node("sectors"), std::to_string(kDiskBytes / 512));
  EXPECT_EQ(h_.device_stats("3/51712").value("phase", ""), "connected") << "a refused resize resumes the disk";
  std::vector<std::byte> out(8 * 512);
  EXPECT_EQ(disk_->read(0, out), 0);
}

// The toolstack's view of one disk of another domain on the same image.
struct SecondDisk {
  std::unique_ptr<frontend::InProcessGuest> guest;
  VbdSpec spec;
};

SecondDisk add_disk_on(DaemonHarness& h, xs::DomId domid, const std::string& target, bool writable) {
  SecondDisk d{h.world().add_guest(domid), {}};
  d.spec.domid = domid;
  d.spec.target = target;
  d.spec.writable = writable;
  h.toolstack().add_vbd(d.spec);
  return d;
}

std::string hotplug_status(DaemonHarness& h, const VbdSpec& spec) {
  std::string status;
  eventually([&] {
    status = h.toolstack().xs().read(xs::kNoTransaction, frontend::SimToolstack::backend_path(spec.domid, spec.devid) +
                                                             "/hotplug-status").value_or("");
    return !status.empty();
  });
  return status;
}

TEST_F(OperationsTest, ASecondWriterOfAnImageIsRefusedWithAReason) {
  auto second = add_disk_on(h_, 4, image_.path(), true);
  EXPECT_EQ(hotplug_status(h_, second.spec), "error");
  const auto error = h_.toolstack().xs().read(
      xs::kNoTransaction, frontend::SimToolstack::backend_path(4, second.spec.devid) + "/hotplug-error");
  ASSERT_TRUE(error.has_value());
  EXPECT_NE(error->find("is in use"), std::string::npos) << *error;
  EXPECT_NE(error->find(image_.path()), std::string::npos) << *error;
  // A reader is refused too while the image has a writer.
  auto reader = add_disk_on(h_, 5, image_.path(), false);
  EXPECT_EQ(hotplug_status(h_, reader.spec), "error");
  // The first guest never noticed.
  ASSERT_EQ(disk_->write(0, frontend::pattern(1, 0, 8, 0)), 0);

  // Once the first disk is gone, the image is free again.
  disk_->close();
  ASSERT_TRUE(h_.toolstack().remove_vbd(3, spec_.devid, kHangGuard));
  auto later = add_disk_on(h_, 6, image_.path(), true);
  EXPECT_EQ(hotplug_status(h_, later.spec), "connected");
}

// Found by fuzz_negotiation: a guest that started over while its disk was
// paused (a kexec, a driver reload: state Initialising, or no readable state
// at all) still had its old rings mapped again by resume, and the backend
// announced Connected to a frontend that had not asked. Those grant refs are
// the guest's to reuse for anything by then. A resume now reconnects only to
// a frontend that is still Initialised or Connected; otherwise the old
// connection is closed, and a frontend starting over finds InitWait.
TEST_F(OperationsTest, ResumeAfterTheGuestStartedOverDoesNotMapItsOldRings) {
  ASSERT_TRUE(command("pause").value("ok", false));
  guest_->xs().write(xs::kNoTransaction, disk_->frontend_path() + "/state", "1");
  auto resumed = command("resume");
  EXPECT_FALSE(resumed.value("ok", true)) << "resumed onto a frontend that started over: " << resumed.dump();
  EXPECT_TRUE(disk_->wait_backend_state(XenbusState::InitWait, kHangGuard)) << "state " << backend_node("state");
  EXPECT_EQ(h_.device_stats("3/51712").value("mapped_grant_pages", 1), 0) << "the old rings were mapped again";
  // The guest's new driver connects as on a first boot.
  disk_.reset();
  disk_ = guest_->disk(spec_.devid);
  ASSERT_NO_THROW(disk_->connect());
  ASSERT_EQ(disk_->write(0, frontend::pattern(4, 0, 8, 0)), 0);
  EXPECT_TRUE(disk_->violations().empty());
}

// Found by fuzz_negotiation: a paused disk whose guest closed it (or reset)
// and connected again was served again, yet "xbbd/paused" stayed recorded, so
// the next xbbd would pause the new connection; and an xbbd that had adopted
// a paused disk still paused it when its storage opened after the frontend
// had closed and started over, holding a fresh guest in InitWait. Closing
// the connection ends its pause.
TEST_F(OperationsTest, ClosingAPausedDiskEndsThePause) {
  ASSERT_TRUE(command("pause").value("ok", false));
  ASSERT_EQ(backend_node("xbbd/paused"), "1");
  ASSERT_NO_THROW(disk_->close());
  EXPECT_EQ(backend_node("xbbd/paused"), "") << "a closed connection's pause outlives it";
  ASSERT_NO_THROW(disk_->reinitialise());
  ASSERT_NO_THROW(disk_->connect());
  EXPECT_EQ(h_.device_stats("3/51712").value("phase", ""), "connected");
  ASSERT_EQ(disk_->write(0, frontend::pattern(5, 0, 8, 0)), 0);
}

TEST(OperationsSharingTest, ReadersShareAnImageAndTwoDomainsOfOneVmShareAWritableOne) {
  DaemonHarness h;
  TempFile image(kDiskBytes);
  auto a = add_disk_on(h, 3, image.path(), false);
  auto b = add_disk_on(h, 4, image.path(), false);
  EXPECT_EQ(hotplug_status(h, a.spec), "connected");
  EXPECT_EQ(hotplug_status(h, b.spec), "connected") << "read-only sharing is allowed";

  // A local migration: the incoming domain's disk is set up while the
  // outgoing domain still has it; both domains are the same VM.
  TempFile migrating(kDiskBytes);
  for (xs::DomId domid : {7, 8}) {
    h.toolstack().create_domain(domid);
    h.toolstack().xs().write(xs::kNoTransaction, "/local/domain/" + std::to_string(domid) + "/vm",
                             "/vm/0e5bd6b4-6f3c-4b43-9d0c-1a2b3c4d5e6f");
  }
  VbdSpec outgoing;
  outgoing.domid = 7;
  outgoing.target = migrating.path();
  h.toolstack().add_vbd(outgoing);
  EXPECT_EQ(hotplug_status(h, outgoing), "connected");
  VbdSpec incoming = outgoing;
  incoming.domid = 8;
  h.toolstack().add_vbd(incoming);
  EXPECT_EQ(hotplug_status(h, incoming), "connected") << "the same VM's incoming domain must get its disk";
}

}  // namespace
}  // namespace xbb::backendtest
