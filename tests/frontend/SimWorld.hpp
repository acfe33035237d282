// The simulated host a whole-daemon test runs in: one xenstore (SimStore),
// one hypervisor (SimHypervisor), the toolstack that plays libxl, and
// optionally the sockets through which guests in other processes join.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "tests/frontend/InProcessGuest.hpp"
#include "tests/frontend/SimParts.hpp"
#include "tests/frontend/SimToolstack.hpp"

namespace xbb::frontend {

class SimWorld {
 public:
  SimWorld()
      : store_(parts::make_store()),
        hypervisor_(parts::make_hypervisor()),
        toolstack_(store_, [hv = hypervisor_.get()](xs::DomId d) { parts::remove_domain(*hv, d); }) {}
  ~SimWorld() { store_server_.reset(); }

  const std::shared_ptr<sim::SimStore>& store() { return store_; }
  sim::SimHypervisor& sim_hypervisor() { return *hypervisor_; }
  ports::Hypervisor& hypervisor() { return parts::as_port(*hypervisor_); }
  SimToolstack& toolstack() { return toolstack_; }

  // A new xenstore connection as `domid` (the daemon takes one as dom0).
  std::unique_ptr<xs::XenStore> connect(xs::DomId domid) { return parts::connect_store(store_, domid); }

  // A guest in this process: creates the domain in xenstore too.
  std::unique_ptr<InProcessGuest> add_guest(xs::DomId domid, uint32_t pages = 8192) {
    toolstack_.create_domain(domid);
    return std::make_unique<InProcessGuest>(store_, *hypervisor_, domid, pages);
  }

  // Opens the store and broker sockets for guests in other processes.
  void serve(const std::string& store_socket, const std::string& broker_socket) {
    store_server_ = parts::serve_store(store_, store_socket);
    parts::listen(*hypervisor_, broker_socket);
  }

  bool wait_domain_gone(xs::DomId domid, std::chrono::milliseconds timeout) {
    return parts::wait_domain_gone(*hypervisor_, domid, timeout);
  }

 private:
  std::shared_ptr<sim::SimStore> store_;
  parts::HypervisorPtr hypervisor_;
  SimToolstack toolstack_;
  std::shared_ptr<void> store_server_;
};

}  // namespace xbb::frontend
