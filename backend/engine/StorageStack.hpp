// The storage a Vbd serves, as layers: the opened target, the copy-on-write
// origin that snapshots hang from, and optionally on top the fault-injection
// decorator (switchable at runtime with `xbbctl fault`). Faults sit above the
// origin so that a failed write never reaches it (nothing to copy) and the
// identity snapshots record is the target's, whether faults are on or not. Built on the
// helper thread that opens the target, since re-attaching snapshot stores
// reads their maps.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "storage/snapshot/CowOriginStorage.hpp"
#include "storage/fault/FaultInjection.hpp"
#include "storage/Storage.hpp"

namespace xbb::backend {

struct StorageStack {
  std::shared_ptr<storage::CowOriginStorage> origin;  // snapshots; identity = the target's describe()
  std::shared_ptr<storage::Storage> top;              // what queues open: `origin` or the fault layer over it
  storage::FaultInjectionStorage* fault = nullptr;     // owned by `top`; null unless enabled
  std::vector<std::string> attach_errors;              // stores that could not be re-attached
};

// Wraps `opened` and re-attaches `snapshot_stores` (each failure is recorded,
// never fatal: the disk is served, the snapshot is not).
// The origin is the image's live one when a snapshot served from it still
// holds it (OriginRegistry::origin_of_image), unless `fresh_origin`: a reopen
// of a disk without snapshots (resize) replaces its origin outright.
StorageStack build_storage_stack(std::unique_ptr<storage::Storage> opened, bool fault_injection,
                                 const std::vector<std::string>& snapshot_stores, bool fresh_origin = false);

}  // namespace xbb::backend
