// xbbd's command line, signals and main loop, shared by the real daemon
// (tools/xbbd.cpp, Xen adapters) and the simulation build used by tests
// (tests/sim, simulated adapters), so both run exactly the same code.
#include <getopt.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <thread>

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include "backend/Daemon.hpp"
#include "backend/DaemonConfig.hpp"
#include "storage/Target.hpp"
#include "tools/XbbdMain.hpp"
#include "xenstore/Vdev.hpp"

namespace {

const char* kUsage = R"(Usage: xbbd [OPTIONS]
       xbbd --domain DOMID --vdev VDEV [OPTIONS]

A user-space Xen paravirtual block backend (blkback-compatible).

Daemon mode (default) serves every vbd whose hotplug script is block-xbbd.
Single-device mode (--domain and --vdev) serves one disk and exits when the
toolstack releases it.

Options:
  -d, --domain DOMID          serve only this frontend domain
  -v, --vdev VDEV             with --domain: only this device (xvda, 51712, ...)
  -c, --config FILE           read settings from FILE (default /etc/xbbd/xbbd.conf
                              when it exists); SIGHUP re-reads its tunables
  -s, --control-socket PATH   control socket for xbbctl (default /run/xbbd/xbbd.sock;
                              single-device mode: /run/xbbd/DOMID-DEVID.sock)
      --backend-type TYPE     backend tree to serve: vbd (default) or vbd3
      --script NAME           daemon mode: serve devices whose script is NAME
                              (default block-xbbd)
      --all                   daemon mode: serve every device of the backend type
      --max-queues N          multi-queue-max-queues (default: number of CPUs)
      --max-ring-page-order N max-ring-page-order, 0..5 (default 5)
      --max-indirect-segments N  feature-max-indirect-segments, 0..256 (default 256)
      --no-persistent-grants  do not offer feature-persistent
      --direct-io             open file targets with O_DIRECT
      --state-dir DIR         where snapshots are recorded so they survive restarts
                              (default /var/lib/xbbd; "none" to keep nothing)
      --fault-injection       put a fault-injection layer on every disk, switched
                              per device with `xbbctl fault` (off until then)
      --log-level LEVEL       trace, debug, info (default), warn, error
  -h, --help                  this text

Tunables (config file or `xbbctl set`): no_coalesce_reqs, disable_flush,
flush_interval, max_list_segments.

Signals: SIGTERM/SIGINT drain in-flight I/O, answer Closing and exit;
SIGHUP reloads tunables from the config file.
)";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "xbbd: " << message << "\nTry 'xbbd --help'.\n";
  std::exit(2);
}

}  // namespace

namespace xbb::tools {

int xbbd_main(int argc, char** argv, const Adapters& adapters) {
  backend::DaemonConfig config;
  config.options.state_dir = "/var/lib/xbbd";
  config.options.vbd.max_queues = std::max(1u, std::thread::hardware_concurrency());
  std::string config_path;
  bool config_given = false;
  std::optional<std::string> vdev;

  enum {
    kBackendType = 256,
    kScript,
    kAll,
    kMaxQueues,
    kMaxOrder,
    kMaxIndirect,
    kNoPersistent,
    kDirectIo,
    kLogLevel,
    kStateDir,
    kFaultInjection
  };
  static const option long_options[] = {
      {"domain", required_argument, nullptr, 'd'},
      {"vdev", required_argument, nullptr, 'v'},
      {"config", required_argument, nullptr, 'c'},
      {"control-socket", required_argument, nullptr, 's'},
      {"backend-type", required_argument, nullptr, kBackendType},
      {"script", required_argument, nullptr, kScript},
      {"all", no_argument, nullptr, kAll},
      {"max-queues", required_argument, nullptr, kMaxQueues},
      {"max-ring-page-order", required_argument, nullptr, kMaxOrder},
      {"max-indirect-segments", required_argument, nullptr, kMaxIndirect},
      {"no-persistent-grants", no_argument, nullptr, kNoPersistent},
      {"direct-io", no_argument, nullptr, kDirectIo},
      {"log-level", required_argument, nullptr, kLogLevel},
      {"state-dir", required_argument, nullptr, kStateDir},
      {"fault-injection", no_argument, nullptr, kFaultInjection},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0}};

  // The config file comes first so that command-line options override it.
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "-c" || arg == "--config") && i + 1 < argc) {
      config_path = argv[i + 1];
      config_given = true;
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(9);
      config_given = true;
    }
  }
  if (!config_given && ::access("/etc/xbbd/xbbd.conf", R_OK) == 0) config_path = "/etc/xbbd/xbbd.conf";
  if (!config_path.empty()) {
    if (auto error = config.load_file(config_path)) usage_error(*error);
  }

  int opt;
  while ((opt = getopt_long(argc, argv, "d:v:c:s:h", long_options, nullptr)) != -1) {
    std::optional<std::string> error;
    switch (opt) {
      case 'd': error = config.set("domain", optarg); break;
      case 'v': vdev = optarg; break;
      case 'c': break;
      case 's': error = config.set("control-socket", optarg); break;
      case kBackendType: error = config.set("backend-type", optarg); break;
      case kScript: error = config.set("script", optarg); break;
      case kAll: error = config.set("script", ""); break;
      case kMaxQueues: error = config.set("max-queues", optarg); break;
      case kMaxOrder: error = config.set("max-ring-page-order", optarg); break;
      case kMaxIndirect: error = config.set("max-indirect-segments", optarg); break;
      case kNoPersistent: error = config.set("persistent-grants", "0"); break;
      case kDirectIo: error = config.set("direct-io", "1"); break;
      case kLogLevel: error = config.set("log-level", optarg); break;
      case kStateDir: error = config.set("state-dir", std::string(optarg) == "none" ? "" : optarg); break;
      case kFaultInjection: error = config.set("fault-injection", "1"); break;
      case 'h': std::cout << kUsage; return 0;
      default: usage_error("unknown option");
    }
    if (error) usage_error(*error);
  }
  if (optind < argc) usage_error(std::string("unexpected argument '") + argv[optind] + "'");
  if (vdev) {
    if (!config.options.only_domain) usage_error("--vdev needs --domain");
    auto devid = xs::parse_vdev(*vdev);
    if (!devid) usage_error("'" + *vdev + "' is not a virtual device name (xvda, hdc, sda, 51712, ...)");
    config.options.only_devid = *devid;
  }
  if (config.options.control_socket.empty()) {
    config.options.control_socket = config.options.only_domain
                                        ? "/run/xbbd/" + std::to_string(*config.options.only_domain) + "-" +
                                              std::to_string(config.options.only_devid.value_or(0)) + ".sock"
                                        : "/run/xbbd/xbbd.sock";
  }
  if (config.options.control_socket == "none") config.options.control_socket.clear();
  if (!config.options.state_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(config.options.state_dir, ec);
    if (ec) usage_error("cannot create the state directory " + config.options.state_dir + ": " + ec.message());
  }
  if (!config.options.control_socket.empty()) {
    const auto dir = std::filesystem::path(config.options.control_socket).parent_path();
    std::error_code ec;
    if (!dir.empty() && std::filesystem::create_directories(dir, ec)) std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  }
  spdlog::set_level(config.log_level);
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");

  if (adapters.refuse_if_blkback_loaded && ::access("/sys/module/xen_blkback", F_OK) == 0) {
    spdlog::error("the kernel's xen-blkback is loaded and claims backend/vbd devices too; unload it "
                  "(modprobe -r xen-blkback) and blacklist it (see README)");
    return 1;
  }

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  try {
    auto hypervisor = adapters.open_hypervisor();
    auto xenstore = adapters.open_xenstore();
    const bool direct_io = config.options.vbd.direct_io;
    backend::Daemon daemon(*xenstore, *hypervisor, config.options, [direct_io](const std::string& target, bool ro) {
      storage::OpenOptions options;
      options.read_only = ro;
      options.direct_io = direct_io;
      return storage::open_target(target, options);
    });
    daemon.on_ready([] { sd_notify(0, "READY=1"); });

    // Signals are taken on their own thread and turned into daemon requests.
    std::thread signal_thread([&daemon, &signals, config_path] {
      for (;;) {
        int sig = 0;
        if (sigwait(&signals, &sig) != 0) continue;
        if (sig == SIGHUP) {
          if (config_path.empty()) {
            spdlog::warn("SIGHUP: no config file to reload");
            continue;
          }
          backend::DaemonConfig fresh;
          if (auto error = fresh.load_file(config_path)) {
            spdlog::error("SIGHUP: {}; keeping the current tunables", *error);
            continue;
          }
          spdlog::info("SIGHUP: tunables reloaded from {}", config_path);
          daemon.set_default_tunables(fresh.options.vbd.tunables);
          continue;
        }
        spdlog::info("signal {}: stopping", sig);
        sd_notify(0, "STOPPING=1");
        daemon.request_stop();
        return;
      }
    });
    const int status = daemon.run();
    if (signal_thread.joinable()) {
      // Wake the signal thread if it is still waiting, then let it exit.
      pthread_kill(signal_thread.native_handle(), SIGTERM);
      signal_thread.join();
    }
    return status;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}

}  // namespace xbb::tools
