// ports::Hypervisor over the real Xen: opens grant table and event channel
// handles (libxengnttab, libxenevtchn) and asks libxenctrl which domains
// still exist. One per daemon; domain_exists() is for the control thread.
#pragma once

#include <memory>

#include "ring/ports/GuestMemory.hpp"
#include "ring/ports/XenGrantTable.hpp"

struct xc_interface_core;

namespace xbb::ports {

class XenHypervisor final : public Hypervisor {
 public:
  // Opens the Xen control interface. Throws std::system_error (with errno and
  // a hint) when not running on Xen with enough privilege.
  static std::unique_ptr<XenHypervisor> open(uint32_t max_grants_per_handle =
                                                 XenGrantTable::kDefaultMaxGrants);
  ~XenHypervisor() override;
  XenHypervisor(const XenHypervisor&) = delete;
  XenHypervisor& operator=(const XenHypervisor&) = delete;

  // nullptr with errno set (and the reason logged) when the device cannot be opened.
  std::unique_ptr<GrantTable> open_grant_table() override;
  std::unique_ptr<EventChannel> open_event_channel() override;
  // False once the domain is gone or dying. When Xen cannot be asked, the
  // answer is true (logged): never tear a guest's disk down on a guess.
  bool domain_exists(DomId domid) override;

 private:
  XenHypervisor(xc_interface_core* xc, uint32_t max_grants) : xc_(xc), max_grants_(max_grants) {}

  xc_interface_core* xc_;
  uint32_t max_grants_;
};

}  // namespace xbb::ports
