#include "tests/frontend/SimToolstack.hpp"

#include <poll.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "xenstore/WithTransaction.hpp"
#include "xenstore/XenbusState.hpp"

namespace xbb::frontend {

using Access = xs::Permission::Access;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

SimToolstack::SimToolstack(std::shared_ptr<sim::SimStore> store, std::function<void(xs::DomId)> destroy)
    : store_(store), destroy_(std::move(destroy)), xs_(parts::connect_store(store, 0)) {}

std::string SimToolstack::backend_path(xs::DomId domid, uint32_t devid) {
  return "/local/domain/0/backend/vbd/" + std::to_string(domid) + "/" + std::to_string(devid);
}

std::string SimToolstack::frontend_path(xs::DomId domid, uint32_t devid) {
  return "/local/domain/" + std::to_string(domid) + "/device/vbd/" + std::to_string(devid);
}

void SimToolstack::create_domain(xs::DomId domid) {
  const std::string dom = "/local/domain/" + std::to_string(domid);
  xs::with_transaction(*xs_, [&](xs::TxId tx) {
    xs_->mkdir(tx, dom);
    xs_->set_permissions(tx, dom, {{0, Access::None}, {domid, Access::Read}});
    xs_->write(tx, dom + "/domid", std::to_string(domid));
    xs_->mkdir(tx, dom + "/device");
    xs_->set_permissions(tx, dom + "/device", {{domid, Access::None}, {0, Access::Read}});
    xs_->mkdir(tx, dom + "/device/vbd");
    xs_->set_permissions(tx, dom + "/device/vbd", {{domid, Access::None}, {0, Access::Read}});
  });
  parts::introduce_domain(*store_, domid);
}

std::string SimToolstack::add_vbd(const VbdSpec& spec) {
  const std::string be = backend_path(spec.domid, spec.devid);
  const std::string fe = frontend_path(spec.domid, spec.devid);
  const std::vector<xs::Permission> be_perms{{0, Access::None}, {spec.domid, Access::Read}};
  const std::vector<xs::Permission> fe_perms{{spec.domid, Access::None}, {0, Access::Read}};
  // libxl writes both directories in one transaction (libxl__device_generic_add).
  xs::with_transaction(*xs_, [&](xs::TxId tx) {
    xs_->mkdir(tx, be);
    xs_->set_permissions(tx, be, be_perms);
    auto put = [&](const std::string& key, const std::string& value) { xs_->write(tx, be + "/" + key, value); };
    put("frontend", spec.frontend_override.value_or(fe));
    put("frontend-id", std::to_string(spec.frontend_id_override.value_or(spec.domid)));
    put("params", spec.target);
    put("script", spec.script);
    put("mode", spec.writable ? "w" : "r");
    put("type", "phy");
    put("online", "1");
    put("removable", "0");
    put("bootable", "1");
    put("dev", "xvda");
    put("device-type", spec.device_type);
    put("discard-enable", spec.discard_enable ? "1" : "0");
    put("state", "1");

    xs_->mkdir(tx, fe);
    xs_->set_permissions(tx, fe, fe_perms);
    auto fput = [&](const std::string& key, const std::string& value) { xs_->write(tx, fe + "/" + key, value); };
    fput("backend", be);
    fput("backend-id", "0");
    fput("state", "1");
    fput("virtual-device", std::to_string(spec.devid));
    fput("device-type", spec.device_type);
    fput("trusted", "1");
  });
  return be;
}

bool SimToolstack::remove_vbd(xs::DomId domid, uint32_t devid, milliseconds timeout) {
  const std::string be = backend_path(domid, devid);
  xs::with_transaction(*xs_, [&](xs::TxId tx) {
    if (!xs_->read(tx, be + "/state")) return;
    xs_->write(tx, be + "/online", "0");
    xs_->write(tx, be + "/state", "5");
  });
  const bool closed = wait_backend_state(domid, devid, xs::XenbusState::Closed, timeout);
  if (!closed)
    spdlog::warn("toolstack: backend {} did not reach Closed (state {}, online {})", be,
                 xs_->read(xs::kNoTransaction, be + "/state").value_or("?"),
                 xs_->read(xs::kNoTransaction, be + "/online").value_or("?"));
  xs::with_transaction(*xs_, [&](xs::TxId tx) {
    xs_->rm(tx, be);
    xs_->rm(tx, frontend_path(domid, devid));
  });
  return closed;
}

void SimToolstack::destroy_domain(xs::DomId domid, bool remove_nodes) {
  if (destroy_) destroy_(domid);
  parts::release_domain(*store_, domid);
  if (!remove_nodes) return;
  xs::with_transaction(*xs_, [&](xs::TxId tx) {
    xs_->rm(tx, "/local/domain/" + std::to_string(domid));
    xs_->rm(tx, "/local/domain/0/backend/vbd/" + std::to_string(domid));
  });
}

std::optional<xs::XenbusState> SimToolstack::backend_state(xs::DomId domid, uint32_t devid) {
  return xs::read_state(*xs_, xs::kNoTransaction, backend_path(domid, devid));
}

namespace {
// Waits for `done` to hold, woken by a watch on `path`.
template <class Pred>
bool wait_watching(xs::XenStore& xs, const std::string& path, const std::string& token, milliseconds timeout,
                   Pred done) {
  xs.watch(path, token);
  const auto deadline = Clock::now() + timeout;
  bool ok = false;
  for (;;) {
    while (xs.read_watch()) {
    }
    if (done()) {
      ok = true;
      break;
    }
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    pollfd p{xs.watch_fd(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(std::min(left, milliseconds(50)).count()));
  }
  xs.unwatch(path, token);
  while (xs.read_watch()) {
  }
  return ok;
}
}  // namespace

bool SimToolstack::wait_backend_state(xs::DomId domid, uint32_t devid, xs::XenbusState state, milliseconds timeout) {
  const std::string be = backend_path(domid, devid);
  return wait_watching(*xs_, be, "toolstack:" + std::to_string(++watch_serial_), timeout,
                       [&] { return xs::read_state(*xs_, xs::kNoTransaction, be) == state; });
}

bool SimToolstack::wait_node(const std::string& path, bool exists, milliseconds timeout) {
  return wait_watching(*xs_, path, "toolstack:" + std::to_string(++watch_serial_), timeout,
                       [&] { return xs_->read(xs::kNoTransaction, path).has_value() == exists; });
}

}  // namespace xbb::frontend
