// A simulated host whose daemon is a separate process: xbbd-sim (the real
// xbbd main on simulated adapters). The xenstore and the toolstack that plays
// libxl live in the test's process, served to xbbd-sim on a socket; the
// hypervisor lives in xbbd-sim, and guests in the test's process attach
// their memory and event channels to it through its broker socket.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tests/backend/CrossProcessChild.hpp"
#include "tests/backend/SimHypervisorHub.hpp"
#include "tests/frontend/SimParts.hpp"
#include "tests/frontend/SimToolstack.hpp"
#include "tests/frontend/SoftBlkfront.hpp"

namespace xbb::backendtest {

// A guest in the test's process whose domain lives in xbbd-sim's hypervisor
// (joined through its broker), or in a hub shared by several xbbd-sim
// processes; destroying it destroys the domain.
class BrokerGuest {
 public:
  BrokerGuest(const std::string& broker_socket, std::shared_ptr<sim::SimStore> store, xs::DomId domid,
              uint32_t pages);
  BrokerGuest(SimHypervisorHub& hub, std::shared_ptr<sim::SimStore> store, xs::DomId domid, uint32_t pages);
  ~BrokerGuest();
  std::unique_ptr<frontend::SoftBlkfront> disk(uint32_t devid, frontend::FrontendConfig config = {}) {
    return std::make_unique<frontend::SoftBlkfront>(*xs_, *memory_, link_, devid, config);
  }

 private:
  frontend::parts::MemoryPtr memory_;
  std::shared_ptr<sim::SimDomainLink> link_;
  std::unique_ptr<xs::XenStore> xs_;
  SimHypervisorHub* hub_ = nullptr;
};

class CrossProcessDaemon {
 public:
  // Where the simulated hypervisor lives: in xbbd-sim (guests join its
  // broker), or in the test (a SimHypervisorHub every xbbd-sim process
  // mirrors: what per-disk mode needs).
  enum class Hypervisor { InDaemon, Shared };
  // Starts `xbbd_sim` in daemon mode with its control socket, state
  // directory and config file (`config` plus the state directory) in a fresh
  // temp dir, plus `extra_args`, and waits until it answers on its control
  // socket. Throws std::runtime_error (with its log) when it does not come up.
  CrossProcessDaemon(const std::string& xbbd_sim, const std::vector<std::string>& extra_args = {},
                     const std::string& config = "", Hypervisor hypervisor = Hypervisor::InDaemon);
  ~CrossProcessDaemon();  // kills xbbd-sim if still running, removes the temp dir

  // Starts xbbd-sim again once the previous process has exited (a restart),
  // with the same arguments, from `executable` when given (an upgrade: a
  // different binary), and waits until it answers. Throws like the constructor.
  void restart(const std::string& executable = "");

  frontend::SimToolstack& toolstack() { return *toolstack_; }
  CrossProcessChild& process() { return *process_; }
  const std::string& control_socket() const { return control_socket_; }
  const std::string& store_socket() const { return store_socket_; }
  const std::string& broker_socket() const { return broker_socket_; }
  const std::string& dir() const { return dir_; }
  // Everything xbbd-sim logged so far (its stderr).
  std::string log() const;

  // Creates the domain in xenstore and attaches its memory to xbbd-sim.
  std::unique_ptr<BrokerGuest> add_guest(xs::DomId domid, uint32_t pages = 4096);

 private:
  void start_and_wait();

  std::vector<std::string> argv_;
  std::string dir_;
  std::string store_socket_, broker_socket_, control_socket_, log_path_, config_path_;
  std::shared_ptr<sim::SimStore> store_;
  std::shared_ptr<void> store_server_;
  std::unique_ptr<SimHypervisorHub> hub_;
  std::unique_ptr<frontend::SimToolstack> toolstack_;
  std::unique_ptr<CrossProcessChild> process_;
};

}  // namespace xbb::backendtest
