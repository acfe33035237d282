// Contract of ports::GrantTable, checked against the simulated hypervisor:
// what a backend relies on when it maps and copies guest grants.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ring/ports/GuestMemory.hpp"
#include "tests/ports/ProcessInspection.hpp"
#include "tests/sim/guestmem/SimGuestMemory.hpp"
#include "tests/sim/guestmem/SimHypervisor.hpp"

namespace xbb::sim {
namespace {

using ports::GrantCopySegment;
using ports::kPageSize;
using Direction = GrantCopySegment::Direction;

constexpr DomId kGuest = 5;
constexpr DomId kBackend = 0;

class SimGrantTableTest : public ::testing::Test {
 protected:
  SimGrantTableTest() : guest_(kGuest, 32), link_(hv_.add_domain(guest_)), gnttab_(hv_.open_grant_table()) {}

  // A fresh guest page filled with `fill`.
  uint32_t page_with(uint8_t fill) {
    uint32_t page = guest_.alloc_page().value();
    std::memset(guest_.page_address(page), fill, kPageSize);
    return page;
  }
  uint8_t* guest_bytes(uint32_t page) { return static_cast<uint8_t*>(guest_.page_address(page)); }
  bool in_use(GrantRef ref) { return guest_.grant_flags(ref) & (GTF_reading | GTF_writing); }

  SimHypervisor hv_{kBackend};
  SimGuestMemory guest_;
  std::shared_ptr<SimDomainLink> link_;
  std::unique_ptr<ports::GrantTable> gnttab_;
};

TEST_F(SimGrantTableTest, WritableMapSharesDataBothWays) {
  uint32_t page = page_with(0xA1);
  GrantRef ref = guest_.grant(page, kBackend, /*readonly=*/false);

  auto* mapped = static_cast<uint8_t*>(gnttab_->map(kGuest, {&ref, 1}, /*writable=*/true));
  ASSERT_NE(mapped, nullptr) << std::strerror(errno);
  EXPECT_EQ(gnttab_->mapped_pages(), 1u);
  EXPECT_EQ(mapped[0], 0xA1);
  EXPECT_EQ(mapped[kPageSize - 1], 0xA1);

  mapped[17] = 0x5C;                 // backend writes...
  EXPECT_EQ(guest_bytes(page)[17], 0x5C);  // ...guest sees it
  guest_bytes(page)[99] = 0x3D;      // guest writes...
  EXPECT_EQ(mapped[99], 0x3D);       // ...backend sees it

  // Xen marks a mapped grant in use for reading and writing.
  EXPECT_EQ(guest_.grant_flags(ref) & (GTF_reading | GTF_writing), GTF_reading | GTF_writing);
  EXPECT_EQ(test::mapping_permissions(mapped), "rw-s");

  EXPECT_EQ(gnttab_->unmap(mapped, 1), 0);
  EXPECT_EQ(gnttab_->mapped_pages(), 0u);
  EXPECT_FALSE(in_use(ref));
}

TEST_F(SimGrantTableTest, SeveralRefsMapAsConsecutivePagesInRefOrder) {
  std::vector<uint32_t> pages = {page_with(1), page_with(2), page_with(3)};
  // Grant them in an order different from the page order.
  std::vector<GrantRef> refs = {guest_.grant(pages[2], kBackend, false),
                                guest_.grant(pages[0], kBackend, true),
                                guest_.grant(pages[1], kBackend, false)};
  auto* mapped = static_cast<uint8_t*>(gnttab_->map(kGuest, refs, /*writable=*/false));
  ASSERT_NE(mapped, nullptr) << std::strerror(errno);
  EXPECT_EQ(gnttab_->mapped_pages(), 3u);
  EXPECT_EQ(mapped[0], 3);
  EXPECT_EQ(mapped[kPageSize], 1);
  EXPECT_EQ(mapped[2 * kPageSize + 5], 2);
  for (GrantRef r : refs) EXPECT_EQ(guest_.grant_flags(r) & (GTF_reading | GTF_writing), GTF_reading);

  EXPECT_EQ(gnttab_->unmap(mapped, 3), 0);
  EXPECT_EQ(gnttab_->mapped_pages(), 0u);
  for (GrantRef r : refs) EXPECT_FALSE(in_use(r));
}

TEST_F(SimGrantTableTest, ReadOnlyGrantRefusesWritableMap) {
  uint32_t page = page_with(0x11);
  GrantRef ref = guest_.grant(page, kBackend, /*readonly=*/true);

  errno = 0;
  EXPECT_EQ(gnttab_->map(kGuest, {&ref, 1}, /*writable=*/true), nullptr);
  EXPECT_NE(errno, 0);
  EXPECT_EQ(gnttab_->mapped_pages(), 0u);
  EXPECT_FALSE(in_use(ref));
  EXPECT_TRUE(guest_.revoke(ref));  // nothing was left pinned
}

// Writes to `address`; the child reports a SIGSEGV as exit code 77. A handler
// rather than the signal itself because sanitizers intercept SIGSEGV.
int write_in_child(volatile uint8_t* address) {
  pid_t pid = ::fork();
  if (pid == 0) {
    struct sigaction sa {};
    sa.sa_handler = [](int) { ::_exit(77); };
    ::sigaction(SIGSEGV, &sa, nullptr);
    ::sigaction(SIGBUS, &sa, nullptr);
    *address = 0xEE;
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

TEST_F(SimGrantTableTest, ReadOnlyMapsCannotBeWritten) {
  uint32_t ro_page = page_with(0x22);
  uint32_t rw_page = page_with(0x33);
  GrantRef ro_ref = guest_.grant(ro_page, kBackend, /*readonly=*/true);
  GrantRef rw_ref = guest_.grant(rw_page, kBackend, /*readonly=*/false);

  // A read-only grant, and a writable grant mapped read-only: both PROT_READ.
  auto* ro = static_cast<uint8_t*>(gnttab_->map(kGuest, {&ro_ref, 1}, false));
  auto* rw_as_ro = static_cast<uint8_t*>(gnttab_->map(kGuest, {&rw_ref, 1}, false));
  ASSERT_NE(ro, nullptr);
  ASSERT_NE(rw_as_ro, nullptr);
  EXPECT_EQ(ro[3], 0x22);
  EXPECT_EQ(rw_as_ro[3], 0x33);
  EXPECT_EQ(test::mapping_permissions(ro), "r--s");
  EXPECT_EQ(test::mapping_permissions(rw_as_ro), "r--s");
  EXPECT_EQ(write_in_child(ro), 77);
  EXPECT_EQ(write_in_child(rw_as_ro), 77);
  EXPECT_EQ(guest_bytes(ro_page)[0], 0x22);  // MAP_SHARED: a child's write would show here

  // A guest write is still visible through the read-only map.
  guest_bytes(ro_page)[3] = 0x44;
  EXPECT_EQ(ro[3], 0x44);

  EXPECT_EQ(gnttab_->unmap(ro, 1), 0);
  EXPECT_EQ(gnttab_->unmap(rw_as_ro, 1), 0);
}

TEST_F(SimGrantTableTest, AnyBadRefFailsTheWholeMapAndLeavesNothingMapped) {
  uint32_t page = page_with(0x55);
  GrantRef good = guest_.grant(page, kBackend, false);
  GrantRef revoked = guest_.grant(page_with(0), kBackend, false);
  ASSERT_TRUE(guest_.revoke(revoked));
  GrantRef for_someone_else = guest_.grant(page_with(0), /*to=*/9, false);
  const GrantRef never_granted = guest_.grant_entries() - 1;
  const GrantRef out_of_table = guest_.grant_entries() + 100;
  const GrantRef reserved = 0;

  for (GrantRef bad : {revoked, for_someone_else, never_granted, out_of_table, reserved}) {
    SCOPED_TRACE(bad);
    std::vector<GrantRef> refs = {good, bad};
    errno = 0;
    EXPECT_EQ(gnttab_->map(kGuest, refs, true), nullptr);
    EXPECT_NE(errno, 0);
    EXPECT_EQ(gnttab_->mapped_pages(), 0u);
    EXPECT_FALSE(in_use(good)) << "the good ref must be unpinned again";
  }
  errno = 0;
  EXPECT_EQ(gnttab_->map(kGuest, {}, true), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(gnttab_->map(/*domid=*/42, {&good, 1}, true), nullptr);
  EXPECT_EQ(errno, ESRCH);
  EXPECT_TRUE(guest_.revoke(good));
}

TEST_F(SimGrantTableTest, RevokeIsRefusedWhileMappedAndMapFailsAfterRevoke) {
  GrantRef ref = guest_.grant(page_with(0x66), kBackend, false);
  void* mapped = gnttab_->map(kGuest, {&ref, 1}, true);
  ASSERT_NE(mapped, nullptr);
  EXPECT_FALSE(guest_.revoke(ref));
  EXPECT_EQ(guest_.grant_flags(ref) & GTF_type_mask, GTF_permit_access) << "refused revoke changed nothing";

  // A second mapping of the same grant (another request) keeps it pinned
  // until both are gone.
  void* again = gnttab_->map(kGuest, {&ref, 1}, false);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(gnttab_->mapped_pages(), 2u);
  EXPECT_EQ(gnttab_->unmap(mapped, 1), 0);
  EXPECT_FALSE(guest_.revoke(ref));
  EXPECT_EQ(guest_.grant_flags(ref) & (GTF_reading | GTF_writing), GTF_reading);
  EXPECT_EQ(gnttab_->unmap(again, 1), 0);

  EXPECT_TRUE(guest_.revoke(ref));
  EXPECT_FALSE(guest_.revoke(ref)) << "double revoke";
  errno = 0;
  EXPECT_EQ(gnttab_->map(kGuest, {&ref, 1}, false), nullptr);
  EXPECT_NE(errno, 0);
  EXPECT_EQ(gnttab_->mapped_pages(), 0u);
}

TEST_F(SimGrantTableTest, UnmapRejectsWhatThisHandleDidNotMap) {
  GrantRef ref = guest_.grant(page_with(0x77), kBackend, false);
  auto* mapped = static_cast<uint8_t*>(gnttab_->map(kGuest, {&ref, 1}, true));
  ASSERT_NE(mapped, nullptr);
  int local = 0;
  EXPECT_EQ(gnttab_->unmap(&local, 1), -EINVAL);
  EXPECT_EQ(gnttab_->unmap(mapped, 2), -EINVAL);
  EXPECT_EQ(gnttab_->mapped_pages(), 1u);
  EXPECT_EQ(mapped[0], 0x77) << "a rejected unmap leaves the mapping intact";
  auto other = hv_.open_grant_table();
  EXPECT_EQ(other->unmap(mapped, 1), -EINVAL) << "another handle cannot unmap it";
  EXPECT_EQ(gnttab_->unmap(mapped, 1), 0);
  EXPECT_EQ(gnttab_->unmap(mapped, 1), -EINVAL) << "double unmap";
}

TEST_F(SimGrantTableTest, ClosingTheHandleUnmapsItsGrants) {
  GrantRef ref = guest_.grant(page_with(0x78), kBackend, false);
  ASSERT_NE(gnttab_->map(kGuest, {&ref, 1}, true), nullptr);
  EXPECT_FALSE(guest_.revoke(ref));
  gnttab_.reset();
  EXPECT_TRUE(guest_.revoke(ref));
}

TEST_F(SimGrantTableTest, CopyReportsStatusPerSegment) {
  uint32_t src_page = page_with(0x10);
  uint32_t dst_page = page_with(0x20);
  uint32_t ro_page = page_with(0x30);
  GrantRef src = guest_.grant(src_page, kBackend, false);
  GrantRef dst = guest_.grant(dst_page, kBackend, false);
  GrantRef ro = guest_.grant(ro_page, kBackend, true);
  GrantRef revoked = guest_.grant(page_with(0x40), kBackend, false);
  ASSERT_TRUE(guest_.revoke(revoked));
  GrantRef elsewhere = guest_.grant(page_with(0x50), /*to=*/9, false);
  std::memcpy(guest_bytes(src_page) + 100, "from the guest", 14);

  std::vector<uint8_t> in(64, 0), ro_in(8, 0), out(32, 0xCC), junk(kPageSize, 0xEE);
  auto seg = [](Direction d, DomId dom, GrantRef r, uint16_t off, uint16_t len, void* buf) {
    GrantCopySegment s;
    s.direction = d;
    s.domid = dom;
    s.ref = r;
    s.offset = off;
    s.length = len;
    s.local = buf;
    s.status = 1;  // must be overwritten
    return s;
  };
  std::vector<GrantCopySegment> batch = {
      seg(Direction::FromGuest, kGuest, src, 100, 14, in.data()),             // 0 ok
      seg(Direction::ToGuest, kGuest, dst, 4064, 32, out.data()),             // 1 ok, up to page end
      seg(Direction::FromGuest, kGuest, guest_.grant_entries() + 7, 0, 8, junk.data()),  // 2 bad ref
      seg(Direction::FromGuest, kGuest, revoked, 0, 8, junk.data()),          // 3 revoked
      seg(Direction::FromGuest, /*no such domain*/ 42, src, 0, 8, junk.data()),  // 4
      seg(Direction::FromGuest, kGuest, elsewhere, 0, 8, junk.data()),        // 5 granted to dom 9
      seg(Direction::ToGuest, kGuest, dst, 4090, 7, junk.data()),             // 6 crosses page end
      seg(Direction::ToGuest, kGuest, ro, 0, 8, junk.data()),                 // 7 write to r/o grant
      seg(Direction::FromGuest, kGuest, ro, 8, 8, ro_in.data()),              // 8 read r/o grant: ok
  };
  ASSERT_EQ(gnttab_->copy(batch), 0);

  EXPECT_EQ(batch[0].status, GNTST_okay);
  EXPECT_EQ(batch[1].status, GNTST_okay);
  EXPECT_EQ(batch[2].status, GNTST_bad_gntref);
  EXPECT_EQ(batch[3].status, GNTST_general_error);
  EXPECT_EQ(batch[4].status, GNTST_bad_domain);
  EXPECT_EQ(batch[5].status, GNTST_general_error);
  EXPECT_EQ(batch[6].status, GNTST_bad_copy_arg);
  EXPECT_EQ(batch[7].status, GNTST_general_error);
  EXPECT_EQ(batch[8].status, GNTST_okay);

  EXPECT_EQ(std::memcmp(in.data(), "from the guest", 14), 0);
  EXPECT_EQ(in[14], 0) << "copied more than asked";
  EXPECT_EQ(guest_bytes(dst_page)[4063], 0x20);
  for (int i = 4064; i < 4096; ++i) ASSERT_EQ(guest_bytes(dst_page)[i], 0xCC) << i;
  for (int i = 0; i < 4096; ++i) ASSERT_EQ(guest_bytes(ro_page)[i], 0x30) << "r/o page written at " << i;
  EXPECT_EQ(guest_bytes(dst_page)[4090], 0xCC) << "the out-of-page segment wrote nothing";
  EXPECT_EQ(ro_in, std::vector<uint8_t>(8, 0x30));
  for (uint8_t b : junk) ASSERT_EQ(b, 0xEE) << "a failed segment moved data";

  // Copies pin only while they run.
  for (GrantRef r : {src, dst, ro}) EXPECT_FALSE(in_use(r));
  EXPECT_TRUE(guest_.revoke(src));
  EXPECT_EQ(gnttab_->mapped_pages(), 0u);
}

TEST_F(SimGrantTableTest, CopyWorksAlongsideAMapOfTheSameGrant) {
  uint32_t page = page_with(0x01);
  GrantRef ref = guest_.grant(page, kBackend, false);
  void* mapped = gnttab_->map(kGuest, {&ref, 1}, false);
  ASSERT_NE(mapped, nullptr);
  uint8_t value = 0x9A;
  GrantCopySegment s;
  s.direction = Direction::ToGuest;
  s.domid = kGuest;
  s.ref = ref;
  s.offset = 10;
  s.length = 1;
  s.local = &value;
  ASSERT_EQ(gnttab_->copy({&s, 1}), 0);
  EXPECT_EQ(s.status, GNTST_okay);
  EXPECT_EQ(static_cast<uint8_t*>(mapped)[10], 0x9A);
  // The copy's writing pin is gone; the map's reading pin stays.
  EXPECT_EQ(guest_.grant_flags(ref) & (GTF_reading | GTF_writing), GTF_reading);
  EXPECT_EQ(gnttab_->unmap(mapped, 1), 0);
  EXPECT_FALSE(in_use(ref));
}

// The guest hammers revoke-and-regrant while the backend maps and unmaps the
// same grant on another thread: a revoke must never succeed while a mapping
// is held, and every successful map must see the granted page.
TEST_F(SimGrantTableTest, RevokeNeverWinsAgainstAHeldMapping) {
  uint32_t page = page_with(0x7E);
  GrantRef ref = guest_.grant(page, kBackend, false);
  std::atomic<uint64_t> held_generation{0};  // odd while a mapping is held
  std::atomic<bool> stop{false};
  std::atomic<int> violations{0}, maps{0}, revokes{0};

  std::thread backend([&] {
    auto gnttab = hv_.open_grant_table();
    // Count successes, not attempts: how often the guest wins is up to the scheduler.
    while (maps < 2000) {
      auto* p = static_cast<uint8_t*>(gnttab->map(kGuest, {&ref, 1}, true));
      if (!p) continue;
      held_generation.fetch_add(1);
      if (p[0] != 0x7E) violations.fetch_add(1);
      ++maps;
      held_generation.fetch_add(1);
      gnttab->unmap(p, 1);
    }
    stop = true;
  });
  while (!stop) {
    uint64_t before = held_generation.load();
    bool revoked = guest_.revoke(ref);
    uint64_t after = held_generation.load();
    if (revoked) {
      ++revokes;
      if (before == after && (before & 1)) violations.fetch_add(1);
      GrantRef again = guest_.grant(page, kBackend, false);
      if (again != ref) violations.fetch_add(1);  // LIFO free list hands the same ref back
    }
    std::this_thread::yield();  // let the backend in even on one core
  }
  backend.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_GT(maps.load(), 0);
  EXPECT_FALSE(in_use(ref));
  EXPECT_TRUE(guest_.revoke(ref));
  RecordProperty("maps", maps.load());
  RecordProperty("revokes", revokes.load());
}

TEST_F(SimGrantTableTest, DestroyedDomainKeepsMappingsButRefusesNewWork) {
  uint32_t page = page_with(0x61);
  GrantRef ref = guest_.grant(page, kBackend, false);
  auto* mapped = static_cast<uint8_t*>(gnttab_->map(kGuest, {&ref, 1}, true));
  ASSERT_NE(mapped, nullptr);
  EXPECT_TRUE(hv_.domain_exists(kGuest));

  DomId gone = 0;
  hv_.set_on_domain_gone([&](DomId d) { gone = d; });
  EXPECT_TRUE(hv_.remove_domain(kGuest));
  EXPECT_EQ(gone, kGuest);
  EXPECT_FALSE(hv_.domain_exists(kGuest));
  EXPECT_FALSE(hv_.remove_domain(kGuest));

  EXPECT_EQ(mapped[0], 0x61) << "existing mappings stay valid memory until unmapped";
  mapped[1] = 0x62;
  errno = 0;
  EXPECT_EQ(gnttab_->map(kGuest, {&ref, 1}, true), nullptr);
  EXPECT_EQ(errno, ESRCH);
  uint8_t buf[4];
  GrantCopySegment s;
  s.domid = kGuest;
  s.ref = ref;
  s.length = 4;
  s.local = buf;
  ASSERT_EQ(gnttab_->copy({&s, 1}), 0);
  EXPECT_EQ(s.status, GNTST_bad_domain);
  EXPECT_EQ(gnttab_->unmap(mapped, 1), 0);
  EXPECT_EQ(gnttab_->mapped_pages(), 0u);
}

TEST_F(SimGrantTableTest, GuestPageAllocatorAndGrantArguments) {
  SimGuestMemory small(6, 3, 16);
  std::vector<uint32_t> pages;
  while (auto p = small.alloc_page()) pages.push_back(*p);
  EXPECT_EQ(pages.size(), 3u);
  EXPECT_EQ(small.free_pages(), 0u);
  small.free_page(pages[1]);
  EXPECT_EQ(small.alloc_page(), pages[1]);
  EXPECT_THROW(small.free_page(77), std::invalid_argument);
  EXPECT_THROW(small.page_address(3), std::out_of_range);
  EXPECT_THROW(small.grant(3, kBackend, false), std::out_of_range);
  EXPECT_THROW(SimGuestMemory(6, 0), std::invalid_argument);

  // The table is page-rounded: 512 entries, 8 of them reserved.
  EXPECT_EQ(small.grant_entries(), 512u);
  for (uint32_t i = 0; i < 504; ++i) ASSERT_GE(small.grant(0, kBackend, false), 8u);
  EXPECT_EQ(small.granted(), 504u);
  EXPECT_THROW(small.grant(0, kBackend, false), std::runtime_error);
  EXPECT_FALSE(small.revoke(0)) << "reserved entries are never granted";
}

TEST_F(SimGrantTableTest, AddDomainRejectsUnusableMemory) {
  SimGuestMemory other(7, 4);
  EXPECT_THROW(hv_.add_domain(kGuest, other.memory_fd(), other.grant_table_fd()),
               std::invalid_argument)
      << "duplicate id";
  EXPECT_THROW(hv_.add_domain(kBackend, other.memory_fd(), other.grant_table_fd()),
               std::invalid_argument)
      << "the backend's own id";
  EXPECT_THROW(hv_.add_domain(7, -1, other.grant_table_fd()), std::invalid_argument);

  // Memory that could shrink under the hypervisor's feet is refused.
  int unsealed = ::memfd_create("unsealed", MFD_CLOEXEC);
  ASSERT_GE(unsealed, 0);
  ASSERT_EQ(::ftruncate(unsealed, 4 * kPageSize), 0);
  EXPECT_THROW(hv_.add_domain(7, unsealed, other.grant_table_fd()), std::invalid_argument);
  ::close(unsealed);
  EXPECT_FALSE(hv_.domain_exists(7));

  auto link = hv_.add_domain(other);
  EXPECT_TRUE(hv_.domain_exists(7));
  EXPECT_EQ(link->domid(), 7);
}

}  // namespace
}  // namespace xbb::sim
