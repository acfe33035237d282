// The simulated guest in another process: it joins through the broker socket,
// shares memory and event channels with the backend (no IPC on the data path),
// and when it is killed the backend sees its domain gone — with nothing
// crashing and no fd leaking.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>

#include <gtest/gtest.h>

#include "tests/ports/ProcessInspection.hpp"
#include "tests/sim/guestmem/SimGuestConnection.hpp"
#include "tests/sim/guestmem/SimGuestEvents.hpp"
#include "tests/sim/guestmem/SimGuestMemory.hpp"
#include "tests/sim/guestmem/SimHypervisor.hpp"

namespace xbb::sim {
namespace {

using namespace std::chrono_literals;
using ports::GrantCopySegment;

constexpr DomId kBackend = 0;
constexpr int kRounds = 50;
// Only a guard against hanging forever when something is broken.
constexpr int kHangGuardMs = 20000;

struct GuestInfo {
  GrantRef request_ref;  // granted writable: the backend writes requests
  GrantRef reply_ref;    // granted read-only: the guest writes replies
  EvtchnPort port;
};

bool read_all(int fd, void* data, size_t size) {
  auto* p = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::read(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool wait_readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  int n;
  do {
    n = ::poll(&p, 1, kHangGuardMs);
  } while (n < 0 && errno == EINTR);
  return n == 1;
}

// The guest process: echoes each request number times ten, then waits to be killed.
[[noreturn]] void run_guest(const std::string& socket_path, DomId domid, int go_fd, int report_fd) {
  try {
    char go;
    if (!read_all(go_fd, &go, 1)) ::_exit(3);
    SimGuestMemory memory(domid, 8);
    uint32_t request_page = memory.alloc_page().value();
    uint32_t reply_page = memory.alloc_page().value();
    auto* request = static_cast<volatile uint32_t*>(memory.page_address(request_page));
    auto* reply = static_cast<volatile uint32_t*>(memory.page_address(reply_page));
    std::memcpy(memory.page_address(reply_page), "hello from the guest", 21);
    GuestInfo info{memory.grant(request_page, kBackend, false), memory.grant(reply_page, kBackend, true), 0};
    auto connection = SimGuestConnection::connect(socket_path, memory);
    SimGuestEvents events(connection);
    info.port = events.alloc_unbound(kBackend);
    if (::write(report_fd, &info, sizeof info) != sizeof info) ::_exit(4);

    for (int round = 1; round <= kRounds; ++round) {
      if (!wait_readable(events.fd())) ::_exit(5);
      auto port = events.pending();
      if (port != info.port) ::_exit(6);
      events.unmask(*port);
      reply[256] = request[0] * 10;
      events.notify(info.port);
    }
    const char done = 'd';
    if (::write(report_fd, &done, 1) != 1) ::_exit(7);
    for (;;) ::pause();  // until SIGKILL
  } catch (...) {
    ::_exit(2);
  }
}

// Kills and reaps the guest process however the test ends.
struct ChildProcess {
  pid_t pid;
  int reap() {
    int status = 0;
    if (pid > 0 && ::waitpid(pid, &status, 0) == pid) pid = -1;
    return status;
  }
  ~ChildProcess() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      reap();
    }
  }
};

class SimCrossProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/xbb-ports-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    socket_path_ = dir_ + "/hypervisor.sock";
  }
  void TearDown() override {
    ::unlink(socket_path_.c_str());
    ::rmdir(dir_.c_str());
  }

  std::string dir_;
  std::string socket_path_;
};

TEST_F(SimCrossProcessTest, GuestProcessSharesMemoryAndEventsThenDies) {
  constexpr DomId kGuest = 11;
  const int fds_before = test::count_open_fds();
  {
    int go_pipe[2], report_pipe[2];
    ASSERT_EQ(::pipe2(go_pipe, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(report_pipe, O_CLOEXEC), 0);
    storage::UniqueFd go_read(go_pipe[0]), go(go_pipe[1]), report(report_pipe[0]), report_write(report_pipe[1]);
    // Fork before the broker thread exists, so the child starts single-threaded.
    ChildProcess child{::fork()};
    ASSERT_GE(child.pid, 0);
    if (child.pid == 0) run_guest(socket_path_, kGuest, go_read.get(), report_write.get());
    go_read.reset();
    report_write.reset();

    SimHypervisor hv(kBackend);
    std::atomic<int> gone_domid{-1};
    hv.set_on_domain_gone([&](DomId d) { gone_domid = d; });
    hv.listen(socket_path_);
    ASSERT_EQ(::write(go.get(), "g", 1), 1);

    GuestInfo info{};
    ASSERT_TRUE(read_all(report.get(), &info, sizeof info)) << "guest process failed to start";
    ASSERT_TRUE(hv.domain_exists(kGuest));

    auto gnttab = hv.open_grant_table();
    auto evtchn = hv.open_event_channel();
    auto* request = static_cast<volatile uint32_t*>(gnttab->map(kGuest, {&info.request_ref, 1}, true));
    auto* reply = static_cast<volatile uint32_t*>(gnttab->map(kGuest, {&info.reply_ref, 1}, false));
    ASSERT_NE(request, nullptr) << std::strerror(errno);
    ASSERT_NE(reply, nullptr) << std::strerror(errno);
    EXPECT_EQ(gnttab->map(kGuest, {&info.reply_ref, 1}, true), nullptr) << "read-only grant";
    EXPECT_EQ(std::memcmp(const_cast<uint32_t*>(reply), "hello from the guest", 21), 0);
    auto port = evtchn->bind_interdomain(kGuest, info.port);
    ASSERT_TRUE(port.has_value()) << std::strerror(errno);

    for (uint32_t round = 1; round <= kRounds; ++round) {
      request[0] = round;
      ASSERT_EQ(evtchn->notify(*port), 0);
      ASSERT_TRUE(wait_readable(evtchn->fd())) << "no answer to round " << round;
      ASSERT_EQ(evtchn->pending(), port);
      ASSERT_EQ(evtchn->unmask(*port), 0);
      ASSERT_EQ(reply[256], round * 10);
    }
    // Grant copy reaches the other process's memory too.
    char greeting[21] = {};
    GrantCopySegment seg;
    seg.domid = kGuest;
    seg.ref = info.reply_ref;
    seg.length = sizeof greeting;
    seg.local = greeting;
    ASSERT_EQ(gnttab->copy({&seg, 1}), 0);
    EXPECT_EQ(seg.status, GNTST_okay);
    EXPECT_STREQ(greeting, "hello from the guest");

    char done = 0;
    ASSERT_TRUE(read_all(report.get(), &done, 1));
    EXPECT_EQ(done, 'd');

    // The guest dies mid-run, with everything still mapped and bound.
    ASSERT_EQ(::kill(child.pid, SIGKILL), 0);
    int status = child.reap();
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "guest exited early: " << status;

    ASSERT_TRUE(hv.wait_domain_gone(kGuest, std::chrono::milliseconds(kHangGuardMs)));
    EXPECT_FALSE(hv.domain_exists(kGuest));
    EXPECT_EQ(gone_domid.load(), kGuest);

    // As on Xen: mappings stay valid memory until unmapped; new work fails.
    EXPECT_EQ(request[0], static_cast<uint32_t>(kRounds));
    EXPECT_EQ(reply[256], static_cast<uint32_t>(kRounds * 10));
    EXPECT_EQ(gnttab->map(kGuest, {&info.request_ref, 1}, true), nullptr);
    ASSERT_EQ(gnttab->copy({&seg, 1}), 0);
    EXPECT_EQ(seg.status, GNTST_bad_domain);
    EXPECT_EQ(evtchn->notify(*port), 0);
    EXPECT_FALSE(evtchn->bind_interdomain(kGuest, info.port).has_value());
    EXPECT_EQ(gnttab->unmap(const_cast<uint32_t*>(request), 1), 0);
    EXPECT_EQ(gnttab->unmap(const_cast<uint32_t*>(reply), 1), 0);
    EXPECT_EQ(gnttab->mapped_pages(), 0u);
    EXPECT_EQ(evtchn->unbind(*port), 0);

  }
  EXPECT_EQ(test::count_open_fds(), fds_before) << "fds leaked";
}

// The broker side seen from a guest in this process (a thread would do the
// same): registration, refusals, bad clients, and a clean disconnect.
TEST_F(SimCrossProcessTest, BrokerAcceptsGuestsAndRefusesBadOnes) {
  const int fds_before = test::count_open_fds();
  {
    SimHypervisor hv(kBackend);
    hv.listen(socket_path_);
    SimGuestMemory memory(12, 4);
    auto connection = SimGuestConnection::connect(socket_path_, memory);
    EXPECT_TRUE(hv.domain_exists(12));

    // A second guest with the same id is refused.
    SimGuestMemory twin(12, 4);
    try {
      SimGuestConnection::connect(socket_path_, twin);
      ADD_FAILURE() << "duplicate domain accepted";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code().value(), EEXIST) << e.what();
    }
    // Unsealed memory is refused.
    int unsealed = ::memfd_create("unsealed", MFD_CLOEXEC);
    ASSERT_EQ(::ftruncate(unsealed, 4 * ports::kPageSize), 0);
    EXPECT_THROW(SimGuestConnection::connect(socket_path_, 13, unsealed, memory.grant_table_fd()),
                 std::system_error);
    ::close(unsealed);
    EXPECT_FALSE(hv.domain_exists(13));

    // A client speaking nonsense is disconnected; the broker carries on.
    int raw = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_path_.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(::connect(raw, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::send(raw, "bogus", 5, MSG_NOSIGNAL), 5);
    char byte;
    EXPECT_EQ(::recv(raw, &byte, 1, 0), 0) << "expected the broker to hang up";
    ::close(raw);

    // Event channels work through the broker link as they do in-process.
    {
      SimGuestEvents events(connection);
      EvtchnPort g = events.alloc_unbound(kBackend);
      auto evtchn = hv.open_event_channel();
      auto b = evtchn->bind_interdomain(12, g);
      ASSERT_TRUE(b.has_value());
      ASSERT_EQ(events.notify(g), 0);
      EXPECT_EQ(evtchn->pending(), b);
      ASSERT_EQ(evtchn->notify(*b), 0);
      EXPECT_EQ(events.pending(), g);
      EXPECT_EQ(events.close(g), 0);
      EXPECT_FALSE(hv.open_event_channel()->bind_interdomain(12, g).has_value()) << "closed port";
    }

    // Hanging up ends the domain.
    connection.reset();
    EXPECT_TRUE(hv.wait_domain_gone(12, std::chrono::milliseconds(kHangGuardMs)));
  }
  EXPECT_EQ(test::count_open_fds(), fds_before) << "fds leaked";
}

TEST_F(SimCrossProcessTest, HangingUpDestroysTheDomain) {
  SimHypervisor hv(kBackend);
  hv.listen(socket_path_);
  SimGuestMemory memory(14, 2);
  auto connection = SimGuestConnection::connect(socket_path_, memory);
  ASSERT_TRUE(hv.domain_exists(14));
  connection.reset();
  EXPECT_TRUE(hv.wait_domain_gone(14, std::chrono::milliseconds(kHangGuardMs)));
  // The id is free again: the guest can come back (a reboot).
  connection = SimGuestConnection::connect(socket_path_, memory);
  EXPECT_TRUE(hv.domain_exists(14));
  hv.stop_listening();
  EXPECT_FALSE(hv.domain_exists(14)) << "stopping the broker ends its guests";
}

}  // namespace
}  // namespace xbb::sim
