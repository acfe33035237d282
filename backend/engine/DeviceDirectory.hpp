// The backend directory of one device, as the engine reads and answers it:
// the security checks made before it is served, and the error report that
// block-xbbd and libxl read. Shared by daemon mode (Vbd) and per-disk mode
// (the Supervisor refuses a device before starting a process for it).
#pragma once

#include <string>

#include "xenstore/BackendPath.hpp"
#include "xenstore/XenStore.hpp"

namespace xbb::backend {

// The checks made before a device is served (DESIGN.md §5): the backend
// directory must say what the toolstack writes, and the guest must not be able
// to write it.
struct DirectoryVerdict {
  enum class Kind { Incomplete, Refused, Acceptable } kind;
  std::string reason;  // why it is refused
};
DirectoryVerdict vet_backend_directory(xs::XenStore& xs, const xs::BackendPath& path);

// Writes hotplug-error and hotplug-status=error (what block-xbbd and libxl
// read); logs when even that fails.
void report_hotplug_error(xs::XenStore& xs, const std::string& backend_dir, const std::string& message);

}  // namespace xbb::backend
