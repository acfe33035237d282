#include "tests/sim/xenstore/ToolstackLayout.hpp"

#include "xenstore/Vdev.hpp"
#include "xenstore/WithTransaction.hpp"

namespace xbb::sim {
namespace {

using xs::kNoTransaction;
using Access = xs::Permission::Access;

std::string dom_path(xs::DomId d) { return "/local/domain/" + std::to_string(d); }

}  // namespace

void toolstack_prepare_domain(xs::XenStore& dom0, xs::DomId domid) {
  const std::vector<xs::Permission> ro{{0, Access::None}, {domid, Access::Read}};
  const std::vector<xs::Permission> rw{{domid, Access::None}};
  const std::string dom = dom_path(domid);
  xs::with_transaction(dom0, [&](xs::TxId tx) {
    dom0.mkdir(tx, dom);
    dom0.set_permissions(tx, dom, ro);
    for (const char* sub : {"device", "control"}) {
      dom0.mkdir(tx, dom + "/" + sub);
      dom0.set_permissions(tx, dom + "/" + sub, ro);
    }
    dom0.mkdir(tx, dom + "/data");
    dom0.set_permissions(tx, dom + "/data", rw);
    dom0.write(tx, dom + "/domid", std::to_string(domid));
  });
}

VbdPaths toolstack_add_vbd(xs::XenStore& dom0, const VbdSpec& spec) {
  const std::string frontend_kind = spec.backend_type == "vbd3" ? "vbd" : spec.backend_type;
  VbdPaths p;
  p.frontend = dom_path(spec.frontend_domid) + "/device/" + frontend_kind + "/" + std::to_string(spec.devid);
  p.backend = dom_path(spec.backend_domid) + "/backend/" + spec.backend_type + "/" +
              std::to_string(spec.frontend_domid) + "/" + std::to_string(spec.devid);
  const std::vector<xs::Permission> frontend_perms{{spec.frontend_domid, Access::None},
                                                   {spec.backend_domid, Access::Read}};
  const std::vector<xs::Permission> backend_perms{{spec.backend_domid, Access::None},
                                                  {spec.frontend_domid, Access::Read}};
  xs::with_transaction(dom0, [&](xs::TxId tx) {
    dom0.rm(tx, p.frontend);
    dom0.mkdir(tx, p.frontend);
    dom0.set_permissions(tx, p.frontend, frontend_perms);
    dom0.write(tx, p.frontend + "/backend", p.backend);
    dom0.write(tx, p.frontend + "/backend-id", std::to_string(spec.backend_domid));
    dom0.write(tx, p.frontend + "/state", "1");
    dom0.write(tx, p.frontend + "/virtual-device", std::to_string(spec.devid));
    dom0.write(tx, p.frontend + "/device-type", spec.device_type);
    dom0.write(tx, p.frontend + "/trusted", spec.trusted ? "1" : "0");

    dom0.rm(tx, p.backend);
    dom0.mkdir(tx, p.backend);
    dom0.set_permissions(tx, p.backend, backend_perms);
    dom0.write(tx, p.backend + "/frontend", p.frontend);
    dom0.write(tx, p.backend + "/frontend-id", std::to_string(spec.frontend_domid));
    dom0.write(tx, p.backend + "/online", "1");
    dom0.write(tx, p.backend + "/removable", "0");
    dom0.write(tx, p.backend + "/bootable", "1");
    dom0.write(tx, p.backend + "/state", "1");
    dom0.write(tx, p.backend + "/dev", xs::vdev_name(spec.devid));
    dom0.write(tx, p.backend + "/type", "phy");
    dom0.write(tx, p.backend + "/mode", spec.mode);
    dom0.write(tx, p.backend + "/device-type", spec.device_type);
    dom0.write(tx, p.backend + "/params", spec.params);
    dom0.write(tx, p.backend + "/script", spec.script);
    if (spec.discard_enable) dom0.write(tx, p.backend + "/discard-enable", *spec.discard_enable ? "1" : "0");
  });
  return p;
}

void toolstack_remove_vbd(xs::XenStore& dom0, const VbdPaths& paths) {
  xs::with_transaction(dom0, [&](xs::TxId tx) {
    dom0.rm(tx, paths.frontend);
    dom0.rm(tx, paths.backend);
  });
}

}  // namespace xbb::sim
