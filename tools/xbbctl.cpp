// xbbctl: inspect and steer a running xbbd through its control socket.
#include <getopt.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backend/daemon/ControlServer.hpp"
#include "tools/PrometheusStats.hpp"

namespace {

// Every command with its synopsis, one line for `xbbctl help` and the full
// text for `xbbctl help COMMAND`. docs/man/xbbctl.8 says the same at more
// length; tests/tools/docs_match_code_test.sh checks that it names them all.
struct Command {
  const char* name;
  const char* synopsis;
  const char* summary;
  const char* details;
};

const Command kCommands[] = {
    {"list", "list", "devices xbbd serves",
     "One line per device: DOMID/DEVID name, vdev, xenbus phase, read-only, queues, size and\n"
     "storage. In per-disk mode, on the supervisor's socket: the process serving each disk,\n"
     "its pid, how often it was restarted and its control socket.\n"},
    {"stats", "stats [DEVICE] [--prometheus]", "statistics per device and per queue",
     "Requests received, completed and failed per operation, bytes moved, request lists\n"
     "dispatched (normal or forced) and requests coalesced, requests in flight, resource\n"
     "shortages, rejected requests, ring halts, event-channel notifications sent, held back\n"
     "and received, a latency histogram (p50 and p99 here) and the tunables; every device,\n"
     "or only DEVICE. With --json the daemon's answer, with per-queue figures in queue_stats.\n"
     "\n"
     "--prometheus prints the Prometheus text exposition format instead: families\n"
     "xbbd_device_* (totals since xbbd started) and xbbd_queue_* (the current connection's\n"
     "rings, label queue), labels device, domid and vdev, and the latency as a histogram in\n"
     "seconds (xbbd_device_request_latency_seconds). For node_exporter's textfile collector:\n"
     "  xbbctl stats --prometheus > /var/lib/prometheus/node-exporter/xbbd.prom.$$ &&\n"
     "    mv /var/lib/prometheus/node-exporter/xbbd.prom.$$ /var/lib/prometheus/node-exporter/xbbd.prom\n"},
    {"set", "set DEVICE NAME VALUE", "change a tunable of one device",
     "Tunables: no_coalesce_reqs (0/1), disable_flush (0/1, unsafe), flush_interval (N),\n"
     "max_list_segments (1..4096), notify_batch (0..1024), notify_delay_us (0..100000).\n"
     "The change survives an xbbd restart (it is kept in the backend's xenstore directory);\n"
     "a reload of the config file (SIGHUP, systemctl reload xbbd) sets every device back to\n"
     "the file's values.\n"},
    {"detach", "detach DEVICE", "close the device (the frontend is told) and release it",
     "xbbd answers Closing, drains the I/O in flight, and stops serving the device once the\n"
     "frontend has closed; the guest loses the disk. The backend directory stays (the\n"
     "toolstack owns it) and xbbd does not take the device again until it is removed.\n"},
    {"pause", "pause DEVICE", "stop serving a disk without closing it",
     "Answers what is in flight, then holds the guest's requests: they wait in its ring,\n"
     "they do not fail. Returns once drained. A paused disk keeps no guest memory mapped\n"
     "and stays paused across an xbbd restart, until xbbctl resume.\n"},
    {"resume", "resume DEVICE [TARGET]", "serve a paused disk again, optionally from a new target",
     "From TARGET if given: it must be at least as large, and it replaces the backend's\n"
     "params. The domain's saved configuration still names the old target: update it\n"
     "before xl save or xl migrate.\n"},
    {"resize", "resize DEVICE", "announce a grown target's new size to the guest",
     "Drains the disk for a moment, reopens the target and announces the new sectors with\n"
     "Connected in one transaction, as Linux blkback does. xbbd also notices growth of\n"
     "files and block devices itself (size-check-interval). A connected disk never shrinks.\n"},
    {"snapshot", "snapshot create|list|delete ...", "point-in-time snapshots of live disks",
     "snapshot create DEVICE STORE [CLUSTER_SIZE]\n"
     "    take a snapshot of DEVICE into the new file STORE (an absolute path that must not\n"
     "    exist; clusters of CLUSTER_SIZE bytes, default 65536); writes in flight drain first\n"
     "snapshot list [DEVICE]\n"
     "    snapshots, with how many clusters have been copied and whether each is valid\n"
     "snapshot delete DEVICE ID|STORE [--delete-store]\n"
     "    forget a snapshot, and with --delete-store remove its file\n"
     "Serve a snapshot to a guest with target=snapshot:DOMID/VDEV:STORE and access=ro.\n"},
    {"fault", "fault DEVICE SPEC", "inject I/O errors and latency (xbbd --fault-injection)",
     "SPEC is off, or comma-separated settings:\n"
     "  rate=N        fail N of every 10000 requests with EIO\n"
     "  ops=LIST      which operations: read+write+flush+discard (default all)\n"
     "  seed=S        the same seed fails the same requests of a run\n"
     "  latency=MIN[-MAX]  add MIN (to MAX) to every request, in us or with an ms suffix\n"
     "e.g. xbbctl fault 3/xvda rate=50,ops=write,seed=7\n"},
    {"help", "help [COMMAND]", "the commands, or one command in full", ""},
};

const Command* find_command(const std::string& name) {
  for (const auto& c : kCommands) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

std::string command_names() {
  std::string names;
  for (const auto& c : kCommands) names += std::string(names.empty() ? "" : ", ") + c.name;
  return names;
}

std::string usage() {
  std::string text = "Usage: xbbctl [--socket PATH] [--json] COMMAND [ARGS]\n\nCommands:\n";
  for (const auto& c : kCommands) text += fmt::format("  {:<34} {}\n", c.synopsis, c.summary);
  text +=
      "\nDEVICE is DOMID/VDEV, e.g. 3/xvda or 3/51712. In per-disk mode the supervisor's\n"
      "socket takes every command and passes device commands to the disk's process.\n"
      "`xbbctl help COMMAND` tells more about one.\n"
      "\nOptions:\n"
      "  -s, --socket PATH   xbbd's control socket (default /run/xbbd/xbbd.sock)\n"
      "  -j, --json          print the daemon's JSON answer\n"
      "  -h, --help          this text\n";
  return text;
}

// `xbbctl help [COMMAND]`: 0, or 2 for a command that does not exist.
int help(const std::vector<std::string>& args) {
  if (args.size() == 1) {
    std::cout << usage();
    return 0;
  }
  const Command* c = args.size() == 2 ? find_command(args[1]) : nullptr;
  if (!c) {
    std::cerr << "xbbctl: " << (args.size() == 2 ? "no command '" + args[1] + "'" : std::string("help takes one command"))
              << " (commands: " << command_names() << ")\n";
    return 2;
  }
  std::cout << "Usage: xbbctl [--socket PATH] [--json] " << c->synopsis << "\n\n" << c->summary << ".\n";
  if (*c->details) std::cout << "\n" << c->details;
  return 0;
}

using nlohmann::json;

std::string human_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return fmt::format("{:.1f} {}", v, units[u]);
}

// Per-disk mode: the supervisor lists the process serving each disk.
void print_processes(const json& answer) {
  fmt::print("{:<12} {:<6} {:<10} {:>8} {:>8} {}\n", "DEVICE", "VDEV", "PROCESS", "PID", "RESTARTS", "SOCKET");
  for (const auto& d : answer["devices"]) {
    fmt::print("{:<12} {:<6} {:<10} {:>8} {:>8} {}\n", d.value("device", ""), d.value("vdev", ""),
               d.value("process", ""), d.contains("pid") ? std::to_string(d["pid"].get<int>()) : "-",
               d.value("restarts", 0), d.value("socket", ""));
    if (d.contains("last_exit")) fmt::print("    last process {}\n", d.value("last_exit", ""));
  }
}

void print_list(const json& answer) {
  if (answer.value("per_disk", false)) {
    print_processes(answer);
    return;
  }
  fmt::print("{:<12} {:<6} {:<10} {:<3} {:>6} {:<10} {}\n", "DEVICE", "VDEV", "PHASE", "RO", "QUEUES", "SIZE", "STORAGE");
  for (const auto& d : answer["devices"]) {
    fmt::print("{:<12} {:<6} {:<10} {:<3} {:>6} {:<10} {}\n", d.value("device", ""), d.value("vdev", ""),
               d.value("phase", ""), d.value("read_only", false) ? "yes" : "no", d.value("queues", 0),
               human_bytes(d.value("size_bytes", uint64_t{0})), d.value("storage", ""));
  }
}

void print_stats(const json& answer) {
  for (const auto& d : answer["devices"]) {
    const auto& s = d["stats"];
    fmt::print("{} ({}) {} — {}\n", d.value("device", ""), d.value("vdev", ""), d.value("phase", ""),
               d.value("storage", ""));
    fmt::print("  {:<9} {:>12} {:>12} {:>9}\n", "operation", "received", "completed", "failed");
    for (const auto& [op, c] : s["operations"].items()) {
      fmt::print("  {:<9} {:>12} {:>12} {:>9}\n", op, c.value("received", 0), c.value("completed", 0),
                 c.value("failed", 0));
    }
    fmt::print("  bytes read {}, written {}\n", human_bytes(s.value("bytes_read", uint64_t{0})),
               human_bytes(s.value("bytes_written", uint64_t{0})));
    fmt::print("  dispatches: {} normal, {} forced; {} requests coalesced\n", s.value("normal_dispatches", 0),
               s.value("forced_dispatches", 0), s.value("coalesced_requests", 0));
    fmt::print("  in flight {}, resource shortages {}, rejected {}, ring halts {}\n", s.value("in_flight", 0),
               s.value("resource_shortages", 0), s.value("rejected_requests", 0), s.value("ring_halts", 0));
    fmt::print("  event-channel notifications: {} sent ({} held back to cover more responses), {} received\n",
               s.value("notifications_sent", 0), s.value("notifications_held", 0), s.value("notifications_received", 0));
    fmt::print("  answers that waited for an earlier request's (ring order): {}\n", s.value("responses_held_in_order", 0));
    fmt::print("  events from the guest held back for finding no request: {}; persistent grants evicted: {}\n",
               s.value("events_deferred", 0), s.value("persistent_grants_purged", 0));
    fmt::print("  latency p50 <= {} us, p99 <= {} us\n", s.value("latency_p50_us", 0), s.value("latency_p99_us", 0));
    fmt::print("  tunables:");
    for (const auto& [name, value] : d["tunables"].items()) fmt::print(" {}={}", name, value.get<std::string>());
    fmt::print("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket = "/run/xbbd/xbbd.sock";
  bool as_json = false;
  static const option long_options[] = {{"socket", required_argument, nullptr, 's'},
                                        {"json", no_argument, nullptr, 'j'},
                                        {"help", no_argument, nullptr, 'h'},
                                        {nullptr, 0, nullptr, 0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "+s:jh", long_options, nullptr)) != -1) {
    switch (opt) {
      case 's': socket = optarg; break;
      case 'j': as_json = true; break;
      case 'h': std::cout << usage(); return 0;
      default: std::cerr << usage(); return 2;
    }
  }
  std::vector<std::string> args(argv + optind, argv + argc);
  if (args.empty()) {
    std::cerr << "xbbctl: no command given\n" << usage();
    return 2;
  }
  const std::string command = args[0];
  if (command == "help") return help(args);
  bool prometheus = false;
  json request{{"command", command}};
  auto need = [&](size_t n, const char* usage) {
    if (args.size() != n) {
      std::cerr << "xbbctl: usage: xbbctl " << usage << "\n";
      std::exit(2);
    }
  };
  if (command == "list") {
    need(1, "list");
  } else if (command == "stats") {
    if (auto it = std::find(args.begin(), args.end(), "--prometheus"); it != args.end()) {
      prometheus = true;
      args.erase(it);
    }
    if (args.size() > 2) need(2, "stats [DEVICE] [--prometheus]");
    if (prometheus && as_json) {
      std::cerr << "xbbctl: stats: --json and --prometheus are two different outputs; choose one\n";
      return 2;
    }
    if (args.size() == 2) request["device"] = args[1];
  } else if (command == "set") {
    need(4, "set DEVICE NAME VALUE");
    request["device"] = args[1];
    request["name"] = args[2];
    request["value"] = args[3];
  } else if (command == "detach") {
    need(2, "detach DEVICE");
    request["device"] = args[1];
  } else if (command == "pause" || command == "resize") {
    need(2, command == "pause" ? "pause DEVICE" : "resize DEVICE");
    request["device"] = args[1];
  } else if (command == "resume") {
    if (args.size() != 2) need(3, "resume DEVICE [TARGET]");
    request["device"] = args[1];
    if (args.size() == 3) request["target"] = args[2];
  } else if (command == "fault") {
    need(3, "fault DEVICE SPEC");
    request["device"] = args[1];
    request["spec"] = args[2];
  } else if (command == "snapshot") {
    const std::string sub = args.size() > 1 ? args[1] : "";
    if (sub == "create") {
      if (args.size() != 4 && args.size() != 5) need(0, "snapshot create DEVICE STORE [CLUSTER_SIZE]");
      request = {{"command", "snapshot-create"}, {"device", args[2]}, {"store", args[3]}};
      if (args.size() == 5) {
        try {
          request["cluster_size"] = static_cast<uint32_t>(std::stoul(args[4]));
        } catch (const std::exception&) {
          std::cerr << "xbbctl: cluster size '" << args[4] << "' is not a number\n";
          return 2;
        }
      }
    } else if (sub == "list") {
      if (args.size() > 3) need(0, "snapshot list [DEVICE]");
      request = {{"command", "snapshot-list"}};
      if (args.size() == 3) request["device"] = args[2];
    } else if (sub == "delete") {
      const bool delete_store = args.size() == 5 && args[4] == "--delete-store";
      if (args.size() != 4 && !delete_store) need(0, "snapshot delete DEVICE ID|STORE [--delete-store]");
      request = {{"command", "snapshot-delete"}, {"device", args[2]}, {"snapshot", args[3]}, {"delete_store", delete_store}};
    } else {
      std::cerr << "xbbctl: usage: xbbctl snapshot create|list|delete ...\n";
      return 2;
    }
  } else {
    std::cerr << "xbbctl: unknown command '" << command << "' (commands: " << command_names()
              << "; xbbctl help COMMAND)\n";
    return 2;
  }

  json answer;
  try {
    answer = xbb::backend::control_request(socket, request);
  } catch (const std::exception& e) {
    std::cerr << "xbbctl: " << e.what() << "\n";
    return 1;
  }
  if (as_json) {
    std::cout << answer.dump(2) << "\n";
    return answer.value("ok", false) ? 0 : 1;
  }
  if (!answer.value("ok", false)) {
    std::cerr << "xbbctl: " << answer.value("error", std::string("failed")) << "\n";
    return 1;
  }
  // Per-disk mode, a command about every disk: the processes that did not answer.
  for (const auto& u : answer.value("unreachable", json::array())) {
    std::cerr << "xbbctl: " << u.value("error", std::string("not reachable")) << "\n";
  }
  if (command == "list") {
    print_list(answer);
  } else if (command == "stats" && prometheus) {
    std::cout << xbb::tools::prometheus_exposition(answer);
  } else if (command == "stats") {
    print_stats(answer);
  } else if (request["command"] == "snapshot-list") {
    fmt::print("{:<12} {:<36} {:>8} {:>14} {:<7} {}\n", "DEVICE", "ID", "CLUSTER", "COPIED", "STATE", "STORE");
    for (const auto& s : answer["snapshots"]) {
      fmt::print("{:<12} {:<36} {:>8} {:>14} {:<7} {}\n", s.value("origin", ""), s.value("id", ""),
                 s.value("cluster_size", 0),
                 fmt::format("{}/{}", s.value("copied_clusters", 0), s.value("cluster_count", 0)),
                 s.value("valid", false) ? "valid" : "INVALID", s.value("store", ""));
      if (!s.value("valid", false)) fmt::print("    {}\n", s.value("invalid_reason", ""));
    }
  } else if (request["command"] == "snapshot-create") {
    fmt::print("snapshot {} taken into {}\n", answer["snapshot"].value("id", ""), answer["snapshot"].value("store", ""));
  } else {
    std::cout << "ok\n";
  }
  return answer.contains("unreachable") ? 1 : 0;  // what could be shown was, but not everything
}
