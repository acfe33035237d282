// Plays libxl (Xen 4.17) on a SimStore: creates and destroys domains and adds
// and removes vbds with exactly the nodes and permissions libxl writes
// (DESIGN.md §5), so the daemon under test sees what it sees in production.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <functional>

#include "tests/frontend/SimParts.hpp"
#include "xenstore/XenStore.hpp"
#include "xenstore/XenbusState.hpp"

namespace xbb::frontend {

struct VbdSpec {
  xs::DomId domid = 1;
  uint32_t devid = 51712;  // xvda
  std::string target = "ram:16M";
  bool writable = true;
  std::string script = "/etc/xen/scripts/block-xbbd";
  std::string device_type = "disk";
  bool discard_enable = true;
  // Hostile or broken toolstack output, for refusal tests.
  std::optional<std::string> frontend_override;
  std::optional<xs::DomId> frontend_id_override;
};

class SimToolstack {
 public:
  // `destroy` (optional) removes a domain from the hypervisor (xl destroy).
  explicit SimToolstack(std::shared_ptr<sim::SimStore> store,
                        std::function<void(xs::DomId)> destroy = nullptr);

  static std::string backend_path(xs::DomId domid, uint32_t devid);
  static std::string frontend_path(xs::DomId domid, uint32_t devid);

  // /local/domain/D (owned by dom0, readable by D) and its device/ directory
  // (owned by D), then fires @introduceDomain.
  void create_domain(xs::DomId domid);
  // Writes the backend then the frontend directory (one transaction each,
  // like libxl's device add). Returns the backend path.
  std::string add_vbd(const VbdSpec& spec);
  // libxl's device remove: online=0 and state=5 in one transaction, wait for
  // the backend's state 6, then remove both directories. Returns whether
  // state 6 arrived within `timeout` (the directories are removed anyway).
  bool remove_vbd(xs::DomId domid, uint32_t devid, std::chrono::milliseconds timeout);
  // xl destroy: the domain vanishes from the hypervisor, @releaseDomain
  // fires; with `remove_nodes` its xenstore nodes (the domain's directory and
  // its backend directories) are removed afterwards.
  void destroy_domain(xs::DomId domid, bool remove_nodes = true);

  std::optional<xs::XenbusState> backend_state(xs::DomId domid, uint32_t devid);
  // Waits (watching, not polling) for the backend's state; false on timeout.
  bool wait_backend_state(xs::DomId domid, uint32_t devid, xs::XenbusState state,
                          std::chrono::milliseconds timeout);
  // Waits until `path` exists (or, with `exists` false, is gone).
  bool wait_node(const std::string& path, bool exists, std::chrono::milliseconds timeout);

  xs::XenStore& xs() { return *xs_; }

 private:
  std::shared_ptr<sim::SimStore> store_;
  std::function<void(xs::DomId)> destroy_;
  std::unique_ptr<xs::XenStore> xs_;
  unsigned watch_serial_ = 0;
};

}  // namespace xbb::frontend
