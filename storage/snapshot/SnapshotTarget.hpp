// The "snapshot" storage kind: open_target("snapshot:ORIGIN:STORE") opens a
// read-only SnapshotStorage of the snapshot in STORE of the origin registered
// as ORIGIN in the OriginRegistry (syntax in SnapshotStorage.hpp). The store is
// attached to the origin if it is not active yet.
#pragma once

#include <memory>
#include <string>

#include "storage/KindTable.hpp"
#include "storage/OpenOptions.hpp"
#include "storage/Storage.hpp"

namespace xbb::storage {

// The factory itself: `argument` is "ORIGIN:STORE". Throws StorageError.
std::unique_ptr<Storage> open_snapshot_target(const std::string& argument, const OpenOptions& options);

}  // namespace xbb::storage
