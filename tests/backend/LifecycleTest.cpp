// The xenbus lifecycle of DESIGN.md §4 driven by a simulated toolstack and a
// software blkfront, and the security refusals of §5.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <thread>

#include "tests/backend/DaemonHarness.hpp"
#include "tests/backend/Polling.hpp"
#include "tests/frontend/Pattern.hpp"
#include "xenstore/WithTransaction.hpp"

namespace xbb::backendtest {
namespace {

using frontend::SimToolstack;
using frontend::VbdSpec;
using xs::XenbusState;

TEST(Lifecycle, InitWaitConnectCloseReinitialiseAndRemove) {
  DaemonHarness h;
  auto guest = h.world().add_guest(3);
  VbdSpec spec;
  spec.domid = 3;
  const auto t0 = std::chrono::steady_clock::now();
  h.toolstack().add_vbd(spec);
  ASSERT_TRUE(h.toolstack().wait_backend_state(3, spec.devid, XenbusState::InitWait, 10s));
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
  std::printf("InitWait %lld us after the backend directory was written\n", static_cast<long long>(us.count()));
  auto& xs = h.toolstack().xs();
  const auto be = SimToolstack::backend_path(3, spec.devid);
  EXPECT_EQ(xs.read(0, be + "/feature-max-indirect-segments"), "256");
  EXPECT_EQ(xs.read(0, be + "/multi-queue-max-queues"), "4");
  EXPECT_EQ(xs.read(0, be + "/max-ring-page-order"), "5");
  // The storage opens after InitWait (off the control thread); then the hotplug status.
  ASSERT_TRUE(h.toolstack().wait_node(be + "/hotplug-status", true, 10s));
  EXPECT_EQ(xs.read(0, be + "/hotplug-status").value_or(""), "connected");

  auto disk = guest->disk(spec.devid);
  ASSERT_NO_THROW(disk->connect());
  EXPECT_EQ(disk->backend_state(), XenbusState::Connected);
  for (const char* key : {"sectors", "info", "sector-size", "physical-sector-size", "feature-flush-cache",
                          "feature-barrier", "feature-discard", "feature-persistent"}) {
    EXPECT_TRUE(xs.read(0, be + "/" + key)) << key << " must be published at connect";
  }
  ASSERT_EQ(disk->write(0, frontend::pattern(3, 0, 8, 0)), 0);
  ASSERT_NO_THROW(disk->close());  // Closing answered with Closing, then Closed
  EXPECT_EQ(disk->backend_state(), XenbusState::Closed);

  ASSERT_NO_THROW(disk->reinitialise());  // InitWait again
  ASSERT_NO_THROW(disk->connect());
  std::vector<std::byte> out(8 * 512);
  ASSERT_EQ(disk->read(0, out), 0);
  EXPECT_EQ(out, frontend::pattern(3, 0, 8, 0)) << "data survives a reconnect";
  ASSERT_NO_THROW(disk->close());

  EXPECT_TRUE(h.toolstack().remove_vbd(3, spec.devid, 10s)) << "online=0 with Closed must end in state 6";
  EXPECT_EQ(h.device_count(), 0u);
  EXPECT_TRUE(disk->violations().empty());
}

TEST(Lifecycle, RemovalWhileConnectedClosesAndReleases) {
  DaemonHarness h;
  auto guest = h.world().add_guest(3);
  VbdSpec spec;
  spec.domid = 3;
  h.toolstack().add_vbd(spec);
  auto disk = guest->disk(spec.devid);
  ASSERT_NO_THROW(disk->connect());
  // libxl's remove: online=0 + state 5; the guest answers Closing/Closed.
  std::thread guest_side([&] {
    // Closing, or already Closed when the backend was quicker than we look.
    for (int i = 0; i < 1000; ++i) {
      const auto state = disk->backend_state();
      if (state != XenbusState::Connected) break;
      disk->wait_backend_state(XenbusState::Closing, 10ms);
    }
    try {
      disk->close();
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what();
    }
  });
  EXPECT_TRUE(h.toolstack().remove_vbd(3, spec.devid, 10s));
  guest_side.join();
  // The release may be answered a watch event after state 6 was written.
  for (int i = 0; i < 500 && h.device_count() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(h.device_count(), 0u);
}

// libxl keeps writing into a device's directory after xbbd answered Closed
// (hotplug script, cleanup) and removes it only then; none of those events
// may start a new server on the dying directory, but the same device created
// anew must be served.
// `xl block-detach` as the demo plays it: the toolstack writes Closing and
// waits for Closed while the guest closes on its own thread, and removes the
// directories the moment the backend is Closed. The guest must see its close
// complete (a removed backend counts as closed) rather than wait out its
// timeout for a state it missed (seen: 10 s in 5 of 11 demo runs).
TEST(Lifecycle, DetachWhileTheGuestClosesCompletesWithoutATimeout) {
  DaemonHarness h;
  auto guest = h.world().add_guest(3);
  for (int round = 0; round < 12; ++round) {
    VbdSpec spec;
    spec.domid = 3;
    h.toolstack().add_vbd(spec);
    frontend::FrontendConfig config;
    config.timeout = 3s;  // only bounds a failure; nothing here waits for it
    auto disk = guest->disk(spec.devid, config);
    ASSERT_NO_THROW(disk->connect());
    ASSERT_EQ(disk->write(0, frontend::pattern(3, 0, 8, round)), 0);
    std::string close_error;
    std::thread closer([&] {
      try {
        if (!disk->wait_backend(frontend::closing_or_gone, 3s)) throw std::runtime_error("no Closing");
        disk->close();
      } catch (const std::exception& e) {
        close_error = e.what();
      }
    });
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_TRUE(h.toolstack().remove_vbd(3, spec.devid, 3s)) << "round " << round;
    closer.join();
    EXPECT_EQ(close_error, "") << "round " << round;
    std::printf("round %d: detached in %.1f ms\n", round,
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    ASSERT_TRUE(close_error.empty());
  }
}

TEST(Lifecycle, AReleasedDeviceIsNotServedAgainUntilCreatedAnew) {
  DaemonHarness h;
  auto guest = h.world().add_guest(3);
  VbdSpec spec;
  spec.domid = 3;
  h.toolstack().add_vbd(spec);
  auto disk = guest->disk(spec.devid);
  ASSERT_NO_THROW(disk->connect());
  auto& store = h.toolstack().xs();
  const auto be = SimToolstack::backend_path(3, spec.devid);
  xs::with_transaction(store, [&](xs::TxId tx) {
    store.write(tx, be + "/online", "0");
    store.write(tx, be + "/state", "5");
  });
  ASSERT_NO_THROW(disk->close());
  ASSERT_TRUE(h.toolstack().wait_backend_state(3, spec.devid, XenbusState::Closed, 10s));
  for (int i = 0; i < 500 && h.device_count() != 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(h.device_count(), 0u);

  // The teardown's writes, including online going back to 1 on a Closed device.
  store.write(0, be + "/hotplug-status", "");
  store.write(0, be + "/online", "1");
  store.write(0, be + "/physical-device", "fe:00");
  for (int i = 0; i < 30; ++i) {
    std::this_thread::sleep_for(10ms);
    ASSERT_EQ(h.device_count(), 0u) << "a released device was served again";
    ASSERT_EQ(store.read(0, be + "/state"), "6") << "something rewrote the dying device's state";
  }

  // Removed and created again (xl block-detach, then block-attach): a new device.
  xs::with_transaction(store, [&](xs::TxId tx) {
    store.rm(tx, be);
    store.rm(tx, SimToolstack::frontend_path(3, spec.devid));
  });
  disk.reset();  // the guest's old frontend object and its watches
  h.toolstack().add_vbd(spec);
  ASSERT_TRUE(h.toolstack().wait_backend_state(3, spec.devid, XenbusState::InitWait, 10s));
  auto again = guest->disk(spec.devid);
  ASSERT_NO_THROW(again->connect());
  ASSERT_EQ(again->write(0, frontend::pattern(3, 0, 8, 1)), 0);
  again->close();
}

TEST(Lifecycle, ReleasedWhenTheFrontendDirectoryVanishes) {
  DaemonHarness h;
  auto guest = h.world().add_guest(3);
  VbdSpec spec;
  spec.domid = 3;
  h.toolstack().add_vbd(spec);
  auto disk = guest->disk(spec.devid);
  ASSERT_NO_THROW(disk->connect());
  h.toolstack().xs().rm(0, SimToolstack::frontend_path(3, spec.devid));
  for (int i = 0; i < 500 && h.device_count() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(h.device_count(), 0u);
  // libxl waits for state 6 after removing the frontend: it must not time out.
  EXPECT_TRUE(h.toolstack().wait_backend_state(3, spec.devid, XenbusState::Closed, 5s));
}

TEST(Lifecycle, ReleasedWhenTheDomainIsDestroyed) {
  DaemonHarness h;
  auto guest = h.world().add_guest(3);
  auto other = h.world().add_guest(4);
  VbdSpec spec;
  spec.domid = 3;
  h.toolstack().add_vbd(spec);
  VbdSpec spec4 = spec;
  spec4.domid = 4;
  h.toolstack().add_vbd(spec4);
  auto disk = guest->disk(spec.devid);
  auto disk4 = other->disk(spec4.devid);
  ASSERT_NO_THROW(disk->connect());
  ASSERT_NO_THROW(disk4->connect());
  ASSERT_EQ(h.device_count(), 2u);
  // Only @releaseDomain and domain_exists() tell the daemon: nodes stay.
  h.toolstack().destroy_domain(3, /*remove_nodes=*/false);
  for (int i = 0; i < 500 && h.device_count() != 1; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(h.device_count(), 1u);
  EXPECT_EQ(h.device_stats("3/51712"), nullptr);
  EXPECT_EQ(disk4->write(0, frontend::pattern(4, 0, 8, 0)), 0) << "the other domain keeps its disk";
  disk4->close();
}

TEST(Lifecycle, RefusesAFrontendOfAnotherDomain) {
  DaemonHarness h;
  auto guest = h.world().add_guest(3);
  h.world().add_guest(9);
  VbdSpec spec;
  spec.domid = 3;
  spec.frontend_override = SimToolstack::frontend_path(9, spec.devid);
  h.toolstack().add_vbd(spec);
  const auto be = SimToolstack::backend_path(3, spec.devid);
  ASSERT_TRUE(h.toolstack().wait_node(be + "/hotplug-status", true, 10s));  // written after hotplug-error
  EXPECT_EQ(h.toolstack().xs().read(0, be + "/hotplug-status"), "error");
  EXPECT_TRUE(h.toolstack().xs().read(0, be + "/hotplug-error"));
  EXPECT_NE(h.toolstack().backend_state(3, spec.devid), XenbusState::InitWait);
  EXPECT_EQ(h.device_count(), 0u);
}

TEST(Lifecycle, RefusesAMismatchedFrontendId) {
  DaemonHarness h;
  auto guest = h.world().add_guest(3);
  VbdSpec spec;
  spec.domid = 3;
  spec.frontend_id_override = 7;
  h.toolstack().add_vbd(spec);
  const auto be = SimToolstack::backend_path(3, spec.devid);
  ASSERT_TRUE(h.toolstack().wait_node(be + "/hotplug-status", true, 10s));
  EXPECT_EQ(h.toolstack().xs().read(0, be + "/hotplug-status"), "error");
  EXPECT_NE(h.toolstack().backend_state(3, spec.devid), XenbusState::InitWait);
  EXPECT_EQ(h.device_count(), 0u);
}

TEST(Lifecycle, IgnoresDevicesOfAnotherScript) {
  DaemonHarness h;
  auto guest = h.world().add_guest(3);
  VbdSpec spec;
  spec.domid = 3;
  spec.script = "/etc/xen/scripts/block";
  h.toolstack().add_vbd(spec);
  VbdSpec ours = spec;
  ours.devid = 51728;
  ours.script = "block-xbbd";
  h.toolstack().add_vbd(ours);
  ASSERT_TRUE(h.toolstack().wait_backend_state(3, ours.devid, XenbusState::InitWait, 10s));
  EXPECT_EQ(h.toolstack().backend_state(3, spec.devid), XenbusState::Initialising);
  EXPECT_EQ(h.device_count(), 1u);
}

TEST(Lifecycle, BadTargetFailsWithAClearHotplugError) {
  DaemonHarness h;
  auto guest = h.world().add_guest(3);
  VbdSpec spec;
  spec.domid = 3;
  spec.target = "/nonexistent/xbb/disk.img";
  h.toolstack().add_vbd(spec);
  const auto be = SimToolstack::backend_path(3, spec.devid);
  ASSERT_TRUE(h.toolstack().wait_node(be + "/hotplug-status", true, 10s));  // written after hotplug-error
  EXPECT_EQ(h.toolstack().xs().read(0, be + "/hotplug-status"), "error");
  EXPECT_TRUE(h.toolstack().xs().read(0, be + "/hotplug-error"));
  EXPECT_NE(h.toolstack().xs().read(0, be + "/hotplug-error").value_or("").find("/nonexistent"), std::string::npos);
}

// Found by fuzz_negotiation: a frontend that goes from Closing straight back
// to Initialising (a reset, a kexec, a driver reload that skips Closed), or
// whose state node stops being a state, after our workers have stopped left
// the backend in Closing for good: only a worker's last event re-checked
// whether closing could finish. The toolstack then waited out its timeout
// for Closed. Both count as done, as they already did when a worker stopped
// after them: Closed, then InitWait again (or release, when removed).
void wait_workers_gone(DaemonHarness& h, const std::string& device) {
  for (int i = 0; i < 1000; ++i) {
    auto stats = h.device_stats(device);
    if (!stats.is_null() && stats["queues"].get<size_t>() == 0) return;
    std::this_thread::sleep_for(5ms);
  }
  FAIL() << "the workers of " << device << " never stopped";
}

// Returns once the daemon has handled every watch event already queued: the
// first command may share a wake-up with them, the second cannot.
void let_daemon_catch_up(DaemonHarness& h) {
  h.command({{"command", "list"}});
  h.command({{"command", "list"}});
}

TEST(Lifecycle, FrontendBackToInitialisingWhileClosingReconnects) {
  DaemonHarness h;
  auto guest = h.world().add_guest(3);
  VbdSpec spec;
  spec.domid = 3;
  h.toolstack().add_vbd(spec);
  auto disk = guest->disk(spec.devid);
  ASSERT_NO_THROW(disk->connect());
  const auto fe = SimToolstack::frontend_path(3, spec.devid);
  guest->xs().write(0, fe + "/state", "5");
  ASSERT_TRUE(disk->wait_backend_state(XenbusState::Closing, 10s));
  wait_workers_gone(h, "3/51712");
  guest->xs().write(0, fe + "/state", "1");
  EXPECT_TRUE(disk->wait_backend_state(XenbusState::InitWait, 10s))
      << "backend state " << h.toolstack().xs().read(0, SimToolstack::backend_path(3, spec.devid) + "/state").value_or("-");
}

TEST(Lifecycle, FrontendBackToInitialisingWhileRemovedIsReleased) {
  DaemonHarness h;
  auto guest = h.world().add_guest(3);
  VbdSpec spec;
  spec.domid = 3;
  h.toolstack().add_vbd(spec);
  auto disk = guest->disk(spec.devid);
  ASSERT_NO_THROW(disk->connect());
  const auto fe = SimToolstack::frontend_path(3, spec.devid);
  guest->xs().write(0, fe + "/state", "5");
  ASSERT_TRUE(disk->wait_backend_state(XenbusState::Closing, 10s));
  wait_workers_gone(h, "3/51712");
  h.toolstack().xs().write(0, SimToolstack::backend_path(3, spec.devid) + "/online", "0");
  let_daemon_catch_up(h);
  guest->xs().write(0, fe + "/state", "1");
  EXPECT_TRUE(h.toolstack().wait_backend_state(3, spec.devid, XenbusState::Closed, 10s));
  for (int i = 0; i < 500 && h.device_count() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(h.device_count(), 0u);
}

TEST(Lifecycle, FrontendStateGarbageWhileRemovedIsReleased) {
  DaemonHarness h;
  auto guest = h.world().add_guest(3);
  VbdSpec spec;
  spec.domid = 3;
  h.toolstack().add_vbd(spec);
  auto disk = guest->disk(spec.devid);
  ASSERT_NO_THROW(disk->connect());
  const auto fe = SimToolstack::frontend_path(3, spec.devid);
  guest->xs().write(0, fe + "/state", "5");
  ASSERT_TRUE(disk->wait_backend_state(XenbusState::Closing, 10s));
  wait_workers_gone(h, "3/51712");
  h.toolstack().xs().write(0, SimToolstack::backend_path(3, spec.devid) + "/online", "0");
  let_daemon_catch_up(h);
  guest->xs().write(0, fe + "/state", "not a state");
  EXPECT_TRUE(h.toolstack().wait_backend_state(3, spec.devid, XenbusState::Closed, 10s));
  for (int i = 0; i < 500 && h.device_count() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(h.device_count(), 0u);
}

// Found by fuzz_control (restoring its device after a fuzzed detach): a
// device detached with xbbctl is not served again while its directory stays,
// but once the toolstack removes the directory and creates it anew it is a
// new device. When the removal was handled while the released Vbd still
// awaited its removal from the daemon's table (the frontend's Closed and the
// toolstack's removal in one batch of watch events), the detached mark was
// never cleared and the new device was never served.
TEST(Lifecycle, ADetachedDeviceRemovedInTheSameBatchIsServedWhenCreatedAnew) {
  DaemonHarness h;
  auto guest = h.world().add_guest(3);
  VbdSpec spec;
  spec.domid = 3;
  h.toolstack().add_vbd(spec);
  auto disk = guest->disk(spec.devid);
  ASSERT_NO_THROW(disk->connect());
  ASSERT_TRUE(h.command({{"command", "detach"}, {"device", "3/xvda"}}).value("ok", false));
  ASSERT_TRUE(disk->wait_backend_state(XenbusState::Closing, 10s));
  const auto fe = SimToolstack::frontend_path(3, spec.devid);
  guest->xs().write(0, fe + "/state", "5");
  let_daemon_catch_up(h);
  // Hold the control thread while the frontend closes and the toolstack
  // removes both directories, so that it sees both in one batch.
  std::promise<void> hold, held;
  h.daemon().post([&] {
    held.set_value();
    hold.get_future().wait();
  });
  held.get_future().wait();
  guest->xs().write(0, fe + "/state", "6");
  auto& store = h.toolstack().xs();
  xs::with_transaction(store, [&](xs::TxId tx) {
    store.rm(tx, SimToolstack::backend_path(3, spec.devid));
    store.rm(tx, fe);
  });
  hold.set_value();
  // Released once its queues have drained, which the workers post back.
  poll_until([&] { return let_daemon_catch_up(h), h.device_count() == 0; }, 5s, 10ms);
  ASSERT_EQ(h.device_count(), 0u);

  disk.reset();
  h.toolstack().add_vbd(spec);
  EXPECT_TRUE(h.toolstack().wait_backend_state(3, spec.devid, XenbusState::InitWait, 10s))
      << "the device created anew was never served";
}

// Found by the soak: `xbbctl fault` reached a detached device after its
// frontend had closed and the toolstack had removed both directories, but
// before the daemon dropped it. Recording the setting for a restart wrote
// backend/vbd/D/N/xbbd/fault, which re-created a stub of the removed
// directory; the detach mark then never cleared (the directory "exists"), so
// the disk created anew there was never served, and the stub stayed forever.
TEST(Lifecycle, ASettingForARemovedDeviceDoesNotRecreateItsDirectory) {
  auto options = default_options();
  options.vbd.fault_injection = true;
  DaemonHarness h(options);
  auto guest = h.world().add_guest(3);
  VbdSpec spec;
  spec.domid = 3;
  h.toolstack().add_vbd(spec);
  auto disk = guest->disk(spec.devid);
  ASSERT_NO_THROW(disk->connect());
  ASSERT_TRUE(h.command({{"command", "detach"}, {"device", "3/xvda"}}).value("ok", false));
  ASSERT_TRUE(disk->wait_backend_state(XenbusState::Closing, 10s));
  const auto fe = SimToolstack::frontend_path(3, spec.devid);
  const auto be = SimToolstack::backend_path(3, spec.devid);
  guest->xs().write(0, fe + "/state", "5");
  let_daemon_catch_up(h);
  // Hold the control thread: the frontend closes and the toolstack removes
  // both directories, then the setting comes, all before the daemon runs again.
  std::promise<void> hold, held;
  h.daemon().post([&] {
    held.set_value();
    hold.get_future().wait();
  });
  held.get_future().wait();
  guest->xs().write(0, fe + "/state", "6");
  auto& store = h.toolstack().xs();
  xs::with_transaction(store, [&](xs::TxId tx) {
    store.rm(tx, be);
    store.rm(tx, fe);
  });
  std::promise<nlohmann::json> answered;
  h.daemon().post([&] {
    answered.set_value(h.daemon().handle_command({{"command", "fault"}, {"device", "3/xvda"}, {"spec", "rate=10"}}));
  });
  hold.set_value();
  answered.get_future().wait();
  let_daemon_catch_up(h);
  EXPECT_FALSE(store.read(0, be).has_value()) << "a stub of the removed backend directory was written";

  disk.reset();
  h.toolstack().add_vbd(spec);
  EXPECT_TRUE(h.toolstack().wait_backend_state(3, spec.devid, XenbusState::InitWait, 10s))
      << "the device created anew was never served";
}

}  // namespace
}  // namespace xbb::backendtest
