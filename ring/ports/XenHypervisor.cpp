#include "ring/ports/XenHypervisor.hpp"

#include <cerrno>
#include <cstring>
#include <system_error>

#include <spdlog/spdlog.h>

#include "ring/ports/XenControl.h"
#include "ring/ports/XenError.hpp"
#include "ring/ports/XenEventChannel.hpp"

namespace xbb::ports {

std::unique_ptr<XenHypervisor> XenHypervisor::open(uint32_t max_grants_per_handle) {
  xc_interface_core* xc = xbb_xc_open();
  if (!xc) throw xen_error(errno, "cannot open the Xen control interface (xc_interface_open)");
  return std::unique_ptr<XenHypervisor>(new XenHypervisor(xc, max_grants_per_handle));
}

XenHypervisor::~XenHypervisor() { xbb_xc_close(xc_); }

std::unique_ptr<GrantTable> XenHypervisor::open_grant_table() {
  try {
    return XenGrantTable::open(max_grants_);
  } catch (const std::system_error& e) {
    spdlog::error("{}", e.what());
    errno = e.code().value();
    return nullptr;
  }
}

std::unique_ptr<EventChannel> XenHypervisor::open_event_channel() {
  try {
    return XenEventChannel::open();
  } catch (const std::system_error& e) {
    spdlog::error("{}", e.what());
    errno = e.code().value();
    return nullptr;
  }
}

bool XenHypervisor::domain_exists(DomId domid) {
  int alive = xbb_xc_domain_alive(xc_, domid);
  if (alive < 0) {
    spdlog::warn("xc_domain_getinfolist({}) failed: {}; assuming the domain still exists", domid,
                 std::strerror(errno));
    return true;
  }
  return alive == 1;
}

}  // namespace xbb::ports
