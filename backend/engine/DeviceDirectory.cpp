#include "backend/engine/DeviceDirectory.hpp"

#include <spdlog/spdlog.h>

#include "xenstore/Vdev.hpp"
#include "xenstore/WithTransaction.hpp"
#include "xenstore/XenstoreKeys.hpp"

namespace xbb::backend {

DirectoryVerdict vet_backend_directory(xs::XenStore& xs, const xs::BackendPath& path) {
  using Kind = DirectoryVerdict::Kind;
  const std::string& dir = path.path;
  auto frontend = xs.read(xs::kNoTransaction, dir + "/frontend");
  auto frontend_id = xs::read_uint(xs, xs::kNoTransaction, dir + "/frontend-id", 0xFFFF);
  if (!frontend || !frontend_id) return {Kind::Incomplete, ""};
  if (*frontend_id != path.frontend_domid) return {Kind::Refused, "frontend-id does not match the backend path"};
  if (!xs::is_expected_frontend(*frontend, path.frontend_domid, path.devid, path.type)) {
    return {Kind::Refused, "frontend '" + xs::printable_excerpt(*frontend) + "' is not " +
                               xs::expected_frontend_path(path.frontend_domid, path.devid, path.type)};
  }
  const auto perms = xs.get_permissions(xs::kNoTransaction, dir);
  for (size_t i = 0; i < perms.size(); ++i) {
    const auto access = perms[i].access;
    const bool writes = access == xs::Permission::Access::Write || access == xs::Permission::Access::Both;
    if ((i == 0 && perms[i].domid != 0) || (writes && !(i == 0 && perms[i].domid == 0))) {
      return {Kind::Refused, "the backend directory is writable by domain " + std::to_string(perms[i].domid)};
    }
  }
  return {Kind::Acceptable, ""};
}

void report_hotplug_error(xs::XenStore& xs, const std::string& backend_dir, const std::string& message) {
  try {
    xs::with_transaction(xs, [&](xs::TxId tx) {
      xs.write(tx, backend_dir + "/hotplug-error", message);
      xs.write(tx, backend_dir + "/hotplug-status", "error");
    });
  } catch (const std::exception& e) {
    spdlog::warn("{}: cannot report '{}': {}", backend_dir, message, e.what());
  }
}

}  // namespace xbb::backend
