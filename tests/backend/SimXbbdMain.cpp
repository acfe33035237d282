// xbbd-sim: the real xbbd (xbb::tools::xbbd_main: command line, config file,
// signals, control socket, daemon loop) on the simulated host instead of Xen,
// so tests can run the daemon as a separate process and send it real signals.
//
// It takes xbbd's options plus two of its own, which are removed before the
// rest reaches xbbd_main:
//   --sim-store SOCKET   xenstore: connect to a SimStoreServer as dom0
//   --sim-broker SOCKET  hypervisor: host a SimHypervisor here and let guests
//                        in other processes attach their memory and event
//                        channels through SOCKET
//   --sim-hub SOCKET     hypervisor, instead of --sim-broker: mirror the one a
//                        SimHypervisorHub at SOCKET shares with every backend
//                        process (per-disk mode: the supervisor passes
//                        --sim-store and --sim-hub on to each disk's process)
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/backend/SimHypervisorHub.hpp"
#include "tests/frontend/SimParts.hpp"
#include "tests/sim/guestmem/SimHypervisor.hpp"
#include "tools/XbbdMain.hpp"

namespace {

// Removes `--name VALUE` / `--name=VALUE` from args; returns VALUE. Returns
// nothing when absent; sets `error` when the option has no value.
std::optional<std::string> take_option(std::vector<char*>& args, const std::string& name, std::string& error) {
  std::optional<std::string> value;
  for (size_t i = 1; i < args.size();) {
    const std::string arg = args[i];
    if (arg == name) {
      if (i + 1 >= args.size()) {
        error = name + " needs a value";
        return std::nullopt;
      }
      value = args[i + 1];
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i), args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
    } else if (arg.rfind(name + "=", 0) == 0) {
      value = arg.substr(name.size() + 1);
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i));
    } else if (arg == "--") {
      break;  // everything after belongs to xbbd (and is an error there)
    } else {
      ++i;
    }
  }
  if (value && value->empty()) error = name + " needs a non-empty value";
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  std::string error;
  auto store_socket = take_option(args, "--sim-store", error);
  auto broker_socket = error.empty() ? take_option(args, "--sim-broker", error) : std::nullopt;
  auto hub_socket = error.empty() ? take_option(args, "--sim-hub", error) : std::nullopt;
  const bool help = args.size() > 1 && (std::strcmp(args[1], "--help") == 0 || std::strcmp(args[1], "-h") == 0);
  if (error.empty() && !help && (!store_socket || !broker_socket == !hub_socket))
    error = "--sim-store SOCKET and one of --sim-broker SOCKET, --sim-hub SOCKET are required";
  for (size_t i = 1; error.empty() && broker_socket && i < args.size(); ++i) {
    // The broker's hypervisor lives in this process: a disk's process could not reach it.
    if (std::strcmp(args[i], "--per-disk") == 0) error = "--per-disk needs --sim-hub";
  }
  if (!error.empty()) {
    std::fprintf(stderr,
                 "xbbd-sim: %s\nusage: xbbd-sim --sim-store SOCKET --sim-broker SOCKET|--sim-hub SOCKET [xbbd options]\n",
                 error.c_str());
    return 2;
  }

  xbb::tools::Adapters adapters;
  adapters.refuse_if_blkback_loaded = false;  // the host's xen-blkback cannot see a simulated store
  if (hub_socket) {
    adapters.open_hypervisor = [hub = *hub_socket] { return xbb::backendtest::join_hub(hub); };
    adapters.child_args = {"--sim-store", store_socket.value_or(""), "--sim-hub", *hub_socket};
  } else {
    adapters.open_hypervisor = [broker = broker_socket.value_or("")] {
      // Created after xbbd_main blocked its signals, so the broker thread
      // leaves SIGTERM/SIGHUP to xbbd's signal thread (the hub mirror's too).
      auto hypervisor = std::make_unique<xbb::sim::SimHypervisor>(0);
      hypervisor->listen(broker);
      return std::unique_ptr<xbb::ports::Hypervisor>(std::move(hypervisor));
    };
  }
  adapters.open_xenstore = [store = store_socket.value_or("")] {
    return xbb::frontend::parts::connect_store_socket(store, 0);
  };
  args.push_back(nullptr);
  return xbb::tools::xbbd_main(static_cast<int>(args.size() - 1), args.data(), adapters);
}
