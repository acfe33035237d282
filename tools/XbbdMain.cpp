// xbbd's command line, signals and main loop, shared by the real daemon
// (tools/xbbd.cpp, Xen adapters) and the simulation build used by tests
// (tests/sim, simulated adapters), so both run exactly the same code.
#include <getopt.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <thread>

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include "backend/daemon/Daemon.hpp"
#include "backend/daemon/DaemonConfig.hpp"
#include "backend/daemon/LockFile.hpp"
#include "backend/daemon/Supervisor.hpp"
#include "storage/Target.hpp"
#include "tools/XbbdMain.hpp"
#include "xenstore/Vdev.hpp"

namespace {

const char* kUsage = R"(Usage: xbbd [OPTIONS]
       xbbd --domain DOMID --vdev VDEV [OPTIONS]

A user-space Xen paravirtual block backend (blkback-compatible).

Daemon mode (default) serves every vbd whose hotplug script is block-xbbd.
Per-disk mode (--per-disk) serves the same devices, each from its own xbbd
process (single-device mode, started and restarted by this one), so a crash
takes down one disk only.
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
      --per-disk              one xbbd process per disk (config: per-disk = 1); each
                              has its control socket DOMID-DEVID.sock next to this
                              one's, and xbbctl on this one's socket reaches them all
      --max-queues N          multi-queue-max-queues (default: number of CPUs)
      --max-ring-page-order N max-ring-page-order, 0..5 (default 5)
      --max-indirect-segments N  feature-max-indirect-segments, 0..256 (default 256)
      --no-persistent-grants  do not offer feature-persistent
      --persistent-grants-per-queue N  grants kept mapped per queue, least recently
                              used evicted beyond (default 1056, as blkback)
      --bounce-pages-per-queue N  4 KiB pages of grant-copy buffers per queue
                              (default 2048)
      --direct-io             open file targets with O_DIRECT
      --state-dir DIR         where snapshots are recorded so they survive restarts
                              (default /var/lib/xbbd; "none" to keep nothing)
      --fault-injection       put a fault-injection layer on every disk, switched
                              per device with `xbbctl fault` (off until then)
      --log-level LEVEL       trace, debug, info (default), warn, error
  -h, --help                  this text

Tunables (config file or `xbbctl set`): no_coalesce_reqs, disable_flush,
flush_interval, max_list_segments, notify_batch, notify_delay_us,
ordered_responses.

Signals: SIGTERM/SIGINT stop xbbd without closing any disk: it stops taking
requests, answers those in flight, releases the guests' rings and exits,
leaving every disk connected; the next xbbd adopts them and the guests only
see a pause (closing a disk is the toolstack's job, or `xbbctl detach`).
SIGHUP reloads tunables from the config file. In per-disk mode both are
passed on to every disk's process (and the supervisor waits for them to exit).

One xbbd per host and per disk: a second daemon refuses to start, and a disk
another xbbd serves is left to it (lock files next to the control socket).
)";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "xbbd: " << message << "\nTry 'xbbd --help'.\n";
  std::exit(2);
}

}  // namespace

namespace xbb::tools {
namespace {

// Takes SIGTERM/SIGINT/SIGHUP, blocked in every thread, on a thread of its
// own and turns them into requests to the control loop.
class SignalThread {
 public:
  SignalThread(sigset_t signals, std::function<void()> on_stop, std::function<void()> on_reload)
      : thread_([this, signals, on_stop = std::move(on_stop), on_reload = std::move(on_reload)] {
          while (!done_.load()) {
            int sig = 0;
            if (sigwait(&signals, &sig) != 0 || done_.load()) continue;
            if (sig == SIGHUP) {
              on_reload();
            } else {
              spdlog::info("signal {}: stopping", sig);
              sd_notify(0, "STOPPING=1");
              on_stop();
            }
          }
        }) {}
  ~SignalThread() {
    done_.store(true);
    pthread_kill(thread_.native_handle(), SIGTERM);  // wakes sigwait
    thread_.join();
  }

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// The config file read again for SIGHUP; nothing (logged) when there is none or it is bad.
std::optional<backend::DaemonConfig> reload_config(const std::string& path) {
  if (path.empty()) {
    spdlog::warn("SIGHUP: no config file to reload");
    return std::nullopt;
  }
  backend::DaemonConfig fresh;
  if (auto error = fresh.load_file(path)) {
    spdlog::error("SIGHUP: {}; keeping the current settings", *error);
    return std::nullopt;
  }
  return fresh;
}

// The command line of the single-device xbbd serving `device` for the
// supervisor: every setting in effect here, so command-line options given
// to the supervisor reach it; the config file for the tunables.
std::vector<std::string> per_disk_command(const backend::DaemonConfig& config, const std::string& config_path,
                                          const Adapters& adapters, const xs::BackendPath& device,
                                          const std::string& socket) {
  const auto& o = config.options;
  std::vector<std::string> argv{"xbbd"};
  argv.insert(argv.end(), adapters.child_args.begin(), adapters.child_args.end());
  const auto level = spdlog::level::to_string_view(config.log_level);
  argv.insert(argv.end(), {"--domain", std::to_string(device.frontend_domid), "--vdev", std::to_string(device.devid),
                           "--control-socket", socket, "--backend-type", o.backend_type, "--log-level",
                           std::string(level.data(), level.size()), "--state-dir",
                           o.state_dir.empty() ? "none" : o.state_dir, "--max-queues",
                           std::to_string(o.vbd.max_queues), "--max-ring-page-order",
                           std::to_string(o.vbd.max_ring_page_order), "--max-indirect-segments",
                           std::to_string(o.vbd.max_indirect_segments), "--persistent-grants-per-queue",
                           std::to_string(o.vbd.persistent_grants_per_queue), "--bounce-pages-per-queue",
                           std::to_string(o.vbd.bounce_pages_per_queue)});
  if (!o.vbd.persistent_grants) argv.push_back("--no-persistent-grants");
  if (o.vbd.direct_io) argv.push_back("--direct-io");
  if (o.vbd.fault_injection) argv.push_back("--fault-injection");
  if (!config_path.empty()) argv.insert(argv.end(), {"--config", config_path});
  return argv;
}

int run_supervisor(xs::XenStore& xenstore, const backend::DaemonConfig& config, const std::string& config_path,
                   const Adapters& adapters, const sigset_t& signals) {
  backend::SupervisorOptions options;
  options.discovery = config.options;
  if (!config.options.control_socket.empty()) {
    options.socket_dir = std::filesystem::path(config.options.control_socket).parent_path().string();
  }
  if (options.socket_dir.empty()) options.socket_dir = ".";
  options.child_command = [config, config_path, &adapters](const xs::BackendPath& device, const std::string& socket) {
    return per_disk_command(config, config_path, adapters, device, socket);
  };
  backend::Supervisor supervisor(xenstore, std::move(options));
  supervisor.on_ready([] { sd_notify(0, "READY=1"); });
  SignalThread signal_thread(
      signals, [&supervisor] { supervisor.request_stop(); },
      [&supervisor, config_path] {
        // Each process re-reads the file itself; checking it here reports a
        // bad file once instead of once per disk.
        if (reload_config(config_path)) supervisor.request_reload();
      });
  return supervisor.run();
}

}  // namespace

int xbbd_main(int argc, char** argv, const Adapters& adapters) {
  // A per-disk process dies with its supervisor: a new supervisor starts a
  // new process for the disk, which must not find this one still serving the ring.
  if (const char* supervisor = std::getenv("XBBD_SUPERVISOR_PID")) {
    const pid_t expected = static_cast<pid_t>(std::atol(supervisor));
    ::unsetenv("XBBD_SUPERVISOR_PID");
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != expected) return 1;  // it died before we got here
  }
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
    kPersistentPerQueue,
    kBouncePerQueue,
    kNoPersistent,
    kDirectIo,
    kLogLevel,
    kStateDir,
    kFaultInjection,
    kPerDisk
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
      {"persistent-grants-per-queue", required_argument, nullptr, kPersistentPerQueue},
      {"bounce-pages-per-queue", required_argument, nullptr, kBouncePerQueue},
      {"no-persistent-grants", no_argument, nullptr, kNoPersistent},
      {"direct-io", no_argument, nullptr, kDirectIo},
      {"log-level", required_argument, nullptr, kLogLevel},
      {"state-dir", required_argument, nullptr, kStateDir},
      {"fault-injection", no_argument, nullptr, kFaultInjection},
      {"per-disk", no_argument, nullptr, kPerDisk},
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
      case kPersistentPerQueue: error = config.set("persistent-grants-per-queue", optarg); break;
      case kBouncePerQueue: error = config.set("bounce-pages-per-queue", optarg); break;
      case kNoPersistent: error = config.set("persistent-grants", "0"); break;
      case kDirectIo: error = config.set("direct-io", "1"); break;
      case kLogLevel: error = config.set("log-level", optarg); break;
      case kStateDir: error = config.set("state-dir", std::string(optarg) == "none" ? "" : optarg); break;
      case kFaultInjection: error = config.set("fault-injection", "1"); break;
      case kPerDisk: error = config.set("per-disk", "1"); break;
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
  // Lock files live next to the control socket (in /run/xbbd by default),
  // so the daemon, its per-disk processes and a hand-started xbbd meet there.
  const std::string run_dir = config.options.control_socket.empty()
                                  ? std::string("/run/xbbd")
                                  : std::filesystem::path(config.options.control_socket).parent_path().string();
  if (!config.options.state_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(config.options.state_dir, ec);
    if (ec) usage_error("cannot create the state directory " + config.options.state_dir + ": " + ec.message());
  }
  {
    std::error_code ec;
    if (!run_dir.empty() && std::filesystem::create_directories(run_dir, ec))
      std::filesystem::permissions(run_dir, std::filesystem::perms::owner_all, ec);
  }
  config.options.lock_dir = run_dir.empty() ? "." : run_dir;
  spdlog::set_level(config.log_level);
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");

  if (adapters.refuse_if_blkback_loaded && ::access("/sys/module/xen_blkback", F_OK) == 0) {
    spdlog::error("the kernel's xen-blkback is loaded and claims backend/vbd devices too; unload it "
                  "(modprobe -r xen-blkback) and blacklist it (see README)");
    return 1;
  }

  // Before anything that could disturb the one already running (its control
  // socket would be replaced, its rings adopted twice).
  std::optional<backend::LockFile> instance_lock;
  if (!config.options.only_domain) {
    const std::string path = config.options.lock_dir + "/xbbd-" + config.options.backend_type + ".lock";
    auto lock = backend::LockFile::acquire(path);
    if (auto* why = std::get_if<std::string>(&lock)) {
      spdlog::error("another xbbd already serves backend/{} on this host ({}); stop it first (systemctl stop xbbd)",
                    config.options.backend_type, *why);
      return 1;
    }
    instance_lock.emplace(std::move(std::get<backend::LockFile>(lock)));
  }

  // Descriptors: the soft limit (often 1024) up to the hard one. A disk's
  // queues are budgeted against it (DescriptorBudget.hpp).
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &files) != 0) spdlog::warn("cannot raise the descriptor limit: {}", std::strerror(errno));
  }

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  try {
    auto xenstore = adapters.open_xenstore();
    if (config.options.per_disk && !config.options.only_domain) {
      return run_supervisor(*xenstore, config, config_path, adapters, signals);
    }
    auto hypervisor = adapters.open_hypervisor();
    const bool direct_io = config.options.vbd.direct_io;
    backend::Daemon daemon(*xenstore, *hypervisor, config.options, [direct_io](const std::string& target, bool ro) {
      storage::OpenOptions options;
      options.read_only = ro;
      options.direct_io = direct_io;
      return storage::open_target(target, options);
    });
    daemon.on_ready([] { sd_notify(0, "READY=1"); });
    SignalThread signal_thread(
        signals, [&daemon] { daemon.request_stop(); },
        [&daemon, config_path] {
          if (auto fresh = reload_config(config_path)) {
            spdlog::info("SIGHUP: tunables reloaded from {}", config_path);
            daemon.set_default_tunables(fresh->options.vbd.tunables);
          }
        });
    return daemon.run();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}

}  // namespace xbb::tools
