// What the toolstack (libxl 4.17, `xl create` / `xl block-attach`) writes to
// xenstore for a domain and its vbds, with the same permissions, so that
// simulated runs exercise the daemon against realistic trees:
//  - /local/domain/D readable by D, its device/ and control/ read-only for
//    D, data/ writable by D;
//  - the frontend dir owned by D, readable by the backend domain;
//  - the backend dir owned by the backend domain, readable by D.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "xenstore/XenStore.hpp"

namespace xbb::sim {

struct VbdSpec {
  xs::DomId frontend_domid = 1;
  uint32_t devid = 51712;            // xvda
  xs::DomId backend_domid = 0;
  std::string backend_type = "vbd";  // "vbd3" for Xen >= 4.19 tap disks
  std::string params;                // the disk target, verbatim
  std::string script = "/etc/xen/scripts/block-xbbd";
  std::string mode = "w";            // "r" for read-only
  std::string device_type = "disk";  // or "cdrom"
  std::optional<bool> discard_enable;
  bool trusted = true;
};

struct VbdPaths {
  std::string frontend;  // /local/domain/D/device/vbd/N
  std::string backend;   // /local/domain/B/backend/<type>/D/N
};

// /local/domain/D and its standard subdirectories, as libxl__domain_make.
void toolstack_prepare_domain(xs::XenStore& dom0, xs::DomId domid);

// Both halves of a vbd in one transaction, as libxl__device_generic_add
// (the domain must have been prepared). Both start in state 1.
VbdPaths toolstack_add_vbd(xs::XenStore& dom0, const VbdSpec& spec);

// Removes both halves, as libxl does after the backend reached Closed.
void toolstack_remove_vbd(xs::XenStore& dom0, const VbdPaths& paths);

}  // namespace xbb::sim
