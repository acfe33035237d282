#include "tests/backend/CrossProcessDaemon.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "backend/daemon/ControlServer.hpp"

namespace xbb::backendtest {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

BrokerGuest::BrokerGuest(const std::string& broker_socket, std::shared_ptr<sim::SimStore> store, xs::DomId domid,
                         uint32_t pages)
    : memory_(frontend::parts::make_memory(domid, pages)),
      link_(frontend::parts::connect_broker(broker_socket, *memory_)),
      xs_(frontend::parts::connect_store(std::move(store), domid)) {}

BrokerGuest::BrokerGuest(SimHypervisorHub& hub, std::shared_ptr<sim::SimStore> store, xs::DomId domid, uint32_t pages)
    : memory_(frontend::parts::make_memory(domid, pages)),
      link_(hub.add_domain(*memory_)),
      xs_(frontend::parts::connect_store(std::move(store), domid)),
      hub_(&hub) {}

BrokerGuest::~BrokerGuest() {
  if (hub_) hub_->remove_domain(frontend::parts::domid_of(*memory_));
}

CrossProcessDaemon::CrossProcessDaemon(const std::string& xbbd_sim, const std::vector<std::string>& extra_args,
                                       const std::string& config, Hypervisor hypervisor) {
  char dir[] = "/tmp/xbb-xproc-XXXXXX";
  if (!::mkdtemp(dir)) throw std::runtime_error("mkdtemp failed");
  dir_ = dir;
  store_socket_ = dir_ + "/store.sock";
  broker_socket_ = dir_ + "/broker.sock";
  control_socket_ = dir_ + "/xbbd.sock";
  log_path_ = dir_ + "/xbbd.log";
  config_path_ = dir_ + "/xbbd.conf";
  // Our own config file keeps a host's /etc/xbbd/xbbd.conf out of the test,
  // and the state directory keeps it out of the host's /var/lib/xbbd.
  std::ofstream(config_path_) << "# xbbd-sim under test\nstate-dir = " << dir_ << "/state\n" << config << "\n";

  store_ = frontend::parts::make_store();
  store_server_ = frontend::parts::serve_store(store_, store_socket_);
  toolstack_ = std::make_unique<frontend::SimToolstack>(store_);

  std::vector<std::string> argv{xbbd_sim, "--sim-store", store_socket_};
  if (hypervisor == Hypervisor::Shared) {
    hub_ = std::make_unique<SimHypervisorHub>(dir_ + "/hub.sock");
    argv.insert(argv.end(), {"--sim-hub", hub_->socket_path()});
  } else {
    argv.insert(argv.end(), {"--sim-broker", broker_socket_});
  }
  argv.insert(argv.end(), {"--control-socket", control_socket_, "--config", config_path_});
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  argv_ = std::move(argv);
  start_and_wait();
}

void CrossProcessDaemon::restart(const std::string& executable) {
  if (process_ && process_->pid() > 0 && !process_->wait(0ms)) throw std::runtime_error("restart: xbbd-sim is still running");
  if (!executable.empty()) argv_[0] = executable;
  start_and_wait();
}

void CrossProcessDaemon::start_and_wait() {
  process_ = std::make_unique<CrossProcessChild>(argv_, log_path_, CrossProcessChild::Stdout::LogFile);
  // Ready once it answers on the control socket: by then the broker listens
  // and the xenstore connection is up.
  const auto deadline = Clock::now() + 10s;
  for (;;) {
    try {
      if (backend::control_request(control_socket_, {{"command", "list"}}).value("ok", false)) break;
    } catch (const std::exception&) {
    }
    if (auto status = process_->wait(0ms))
      throw std::runtime_error("xbbd-sim exited (" + describe_status(*status) + ") before it was ready:\n" + log());
    if (Clock::now() > deadline) throw std::runtime_error("xbbd-sim did not come up:\n" + log());
    std::this_thread::sleep_for(10ms);
  }
}

CrossProcessDaemon::~CrossProcessDaemon() {
  process_.reset();
  toolstack_.reset();
  hub_.reset();
  store_server_.reset();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string CrossProcessDaemon::log() const {
  std::ifstream in(log_path_);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

std::unique_ptr<BrokerGuest> CrossProcessDaemon::add_guest(xs::DomId domid, uint32_t pages) {
  toolstack_->create_domain(domid);
  if (hub_) return std::make_unique<BrokerGuest>(*hub_, store_, domid, pages);
  return std::make_unique<BrokerGuest>(broker_socket_, store_, domid, pages);
}

}  // namespace xbb::backendtest
