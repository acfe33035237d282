// The guest-memory ports: grant table and event channels.
//
// The engine reaches guest memory only through these interfaces. Each has an
// adapter over libxengnttab / libxenevtchn (ring/ports) and a simulated one
// (tests/sim/guestmem). A handle is used by one thread; open one per worker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

namespace xbb::ports {

using DomId = uint16_t;
using GrantRef = uint32_t;
using EvtchnPort = uint32_t;

inline constexpr size_t kPageSize = 4096;

// One segment of a batched grant copy. `status` is written per segment:
// 0 (GNTST_okay) or a negative GNTST_* code from xen/grant_table.h.
struct GrantCopySegment {
  enum class Direction : uint8_t { FromGuest, ToGuest };
  Direction direction = Direction::FromGuest;
  DomId domid = 0;
  GrantRef ref = 0;
  uint16_t offset = 0;   // within the granted page
  uint16_t length = 0;   // offset + length <= kPageSize
  void* local = nullptr; // our buffer
  int16_t status = 0;
};

class GrantTable {
 public:
  virtual ~GrantTable() = default;
  // Maps `refs` of one domain as consecutive pages. Returns nullptr with errno
  // set when any ref cannot be mapped (nothing stays mapped then).
  virtual void* map(DomId domid, std::span<const GrantRef> refs, bool writable) = 0;
  // Unmaps a mapping made by map(). Returns 0 or -errno.
  virtual int unmap(void* address, size_t pages) = 0;
  // Performs every segment; each gets its own status. Returns 0, or -errno
  // when the batch as a whole could not be issued (statuses then undefined).
  virtual int copy(std::span<GrantCopySegment> segments) = 0;
  // Pages currently mapped through this handle (leak checks, statistics).
  virtual size_t mapped_pages() const = 0;
};

class EventChannel {
 public:
  virtual ~EventChannel() = default;
  // Binds to `remote_port` of `domid`; returns the local port or nullopt (errno set).
  virtual std::optional<EvtchnPort> bind_interdomain(DomId domid, EvtchnPort remote_port) = 0;
  virtual int unbind(EvtchnPort local_port) = 0;
  virtual int notify(EvtchnPort local_port) = 0;
  // Readable when some bound port is pending.
  virtual int fd() const = 0;
  // Non-blocking: the next pending port, if any. The port stays masked until unmask().
  virtual std::optional<EvtchnPort> pending() = 0;
  virtual int unmask(EvtchnPort local_port) = 0;
};

// Opens handles and answers questions about domains. One per daemon; the real
// one talks to Xen, the simulated one to the simulated hypervisor.
class Hypervisor {
 public:
  virtual ~Hypervisor() = default;
  virtual std::unique_ptr<GrantTable> open_grant_table() = 0;
  virtual std::unique_ptr<EventChannel> open_event_channel() = 0;
  // Whether `domid` still exists (after @releaseDomain fires).
  virtual bool domain_exists(DomId domid) = 0;
};

}  // namespace xbb::ports
