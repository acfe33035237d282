#include "storage/snapshot/SnapshotTarget.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "storage/snapshot/CowOriginRegistry.hpp"
#include "storage/snapshot/SnapshotStorage.hpp"

namespace xbb::storage {

void add_snapshot_kinds(KindTable& table) { table.kinds["snapshot"] = open_snapshot_target; }

std::unique_ptr<Storage> open_snapshot_target(const std::string& argument, const OpenOptions& options) {
  const auto colon = argument.find(':');
  const std::string origin_name = argument.substr(0, colon);
  const std::string store = colon == std::string::npos ? "" : argument.substr(colon + 1);
  if (origin_name.empty() || store.empty())
    throw StorageError(fmt::format(
        "snapshot: '{}' is not ORIGIN:STORE (e.g. snapshot:3/xvda:/var/lib/xbbd/snap1.cow)", argument));
  auto origin = OriginRegistry::instance().find(origin_name);
  if (!origin) {
    const auto known = OriginRegistry::instance().names();
    throw StorageError(fmt::format("snapshot: origin '{}' is not a disk this daemon serves (served: {})",
                                   origin_name, known.empty() ? "none" : fmt::format("{}", fmt::join(known, ", "))));
  }
  if (!options.read_only) spdlog::info("snapshot: {} is served read-only", argument);
  auto snapshot = origin->find_snapshot(store);
  if (!snapshot) snapshot = origin->attach_snapshot(store);
  if (!snapshot->valid())
    throw StorageError(fmt::format("snapshot: '{}' is invalid ({})", store, snapshot->invalid_reason()));
  return std::make_unique<SnapshotStorage>(std::move(origin), std::move(snapshot));
}

}  // namespace xbb::storage
