// Errors from the Xen libraries, worded for an administrator: which call
// failed, errno's text, and what it usually means.
#pragma once

#include <cerrno>
#include <string>
#include <system_error>

namespace xbb::ports {

inline std::system_error xen_error(int error, const std::string& what) {
  std::string hint;
  if (error == ENOENT || error == ENXIO || error == ENODEV)
    hint = " (is this a Xen dom0 or driver domain with the xen modules and xenfs loaded?)";
  else if (error == EACCES || error == EPERM)
    hint = " (xbbd needs root to use the Xen devices)";
  return std::system_error(error, std::generic_category(), what + hint);
}

}  // namespace xbb::ports
