// A simulated guest in another process: the child acts as domain 7's
// frontend through SimStoreClient while the parent plays the backend on an
// in-process connection to the same store, and they complete a xenbus
// handshake driven purely by watches.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <gtest/gtest.h>

#include "tests/sim/xenstore/SimStoreClient.hpp"
#include "tests/sim/xenstore/SimStoreServer.hpp"
#include "tests/sim/xenstore/SimXenStore.hpp"
#include "tests/sim/xenstore/ToolstackLayout.hpp"
#include "tests/xenstore/XenstoreTestSupport.hpp"
#include "xenstore/Xenbus.hpp"

namespace xbb::xs::testing {
namespace {


constexpr DomId kGuest = 7;
const std::string kFrontend = "/local/domain/7/device/vbd/51712";
const std::string kBackend = "/local/domain/0/backend/vbd/7/51712";

// Runs in the child. Returns 0 on success, otherwise the number of the step
// that failed (reported on stderr as well).
int guest_main(const std::string& socket) {
  auto check = [](bool ok, int step, const char* what) {
    if (!ok) std::fprintf(stderr, "guest step %d failed: %s\n", step, what);
    return ok ? 0 : step;
  };
  try {
    sim::SimStoreClient xs(socket, kGuest);
    // Reads what the toolstack prepared for it.
    if (int r = check(xs.read(kNoTransaction, kFrontend + "/backend") == kBackend, 1, "read backend link")) return r;
    if (int r = check(xs.read(kNoTransaction, kBackend + "/params") == "/img", 2, "read own backend")) return r;
    // Cannot tamper with the backend or peek at another domain.
    try {
      xs.write(kNoTransaction, kBackend + "/params", "/etc/shadow");
      return check(false, 3, "wrote backend params");
    } catch (const Error& e) {
      if (int r = check(e.code().value() == EACCES, 3, "params write errno")) return r;
    }
    try {
      xs.read(kNoTransaction, "/local/domain/8/device/vbd/51712/state");
      return check(false, 4, "read another domain");
    } catch (const Error& e) {
      if (int r = check(e.code().value() == EACCES, 4, "foreign read errno")) return r;
    }
    // Frontend side of the handshake.
    xs.watch(kBackend + "/state", "be");
    with_transaction(xs, [&](TxId tx) {
      xs.write(tx, kFrontend + "/ring-ref", "8");
      xs.write(tx, kFrontend + "/event-channel", "11");
      write_state(xs, tx, kFrontend, XenbusState::Initialised);
    });
    while (true) {
      auto ev = wait_event(xs);
      if (int r = check(ev.has_value(), 5, "backend never connected")) return r;
      if (read_state(xs, kNoTransaction, kBackend) == XenbusState::Connected) break;
    }
    write_state(xs, kNoTransaction, kFrontend, XenbusState::Connected);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "guest failed: %s\n", e.what());
    return 100;
  }
}

TEST(CrossProcess, GuestInAnotherProcessCompletesAXenbusHandshake) {
  auto store = std::make_shared<sim::SimStore>();
  sim::SimXenStore dom0(store, 0);
  // The toolstack's layout, with libxl's permissions.
  sim::toolstack_prepare_domain(dom0, kGuest);
  sim::VbdSpec spec;
  spec.frontend_domid = kGuest;
  spec.params = "/img";
  const sim::VbdPaths paths = sim::toolstack_add_vbd(dom0, spec);
  ASSERT_EQ(paths.frontend, kFrontend);
  ASSERT_EQ(paths.backend, kBackend);
  write_state(dom0, kNoTransaction, kBackend, XenbusState::InitWait);
  sim::toolstack_prepare_domain(dom0, 8);
  spec.frontend_domid = 8;
  sim::toolstack_add_vbd(dom0, spec);
  dom0.watch(kFrontend + "/state", "fe");

  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  // Bound before fork, served after: the child is forked while this process
  // has a single thread, and its connection waits in the listen backlog.
  sim::SimStoreServer server(store, dir.socket());
  const pid_t child = ::fork();
  ASSERT_GE(child, 0) << "fork: " << std::strerror(errno);
  if (child == 0) ::_exit(guest_main(dir.socket()));
  server.start();

  bool answered = false;
  while (!answered) {
    auto ev = wait_event(dom0);
    if (!ev) break;  // the child failed; its exit status says why
    if (read_state(dom0, kNoTransaction, kFrontend) == XenbusState::Initialised) {
      EXPECT_EQ(read_uint(dom0, kNoTransaction, kFrontend + "/ring-ref"), 8u);
      EXPECT_EQ(read_uint(dom0, kNoTransaction, kFrontend + "/event-channel"), 11u);
      write_state(dom0, kNoTransaction, kBackend, XenbusState::Connected);
      answered = true;
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the guest process failed (see its stderr)";
  EXPECT_TRUE(answered);
  EXPECT_EQ(read_state(dom0, kNoTransaction, kFrontend), XenbusState::Connected);
  EXPECT_EQ(dom0.read(kNoTransaction, kBackend + "/params"), "/img");
}

}  // namespace
}  // namespace xbb::xs::testing
