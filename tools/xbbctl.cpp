// xbbctl: inspect and steer a running xbbd through its control socket.
#include <getopt.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backend/daemon/ControlServer.hpp"

namespace {

const char* kUsage = R"(Usage: xbbctl [--socket PATH] [--json] COMMAND [ARGS]

Commands:
  list                      devices xbbd serves (per-disk mode: the process serving
                            each disk, its pid, restarts and control socket)
  stats [DEVICE]            statistics per device and per queue
  set DEVICE NAME VALUE     change a tunable (no_coalesce_reqs, disable_flush,
                            flush_interval, max_list_segments, notify_batch,
                            notify_delay_us)
  detach DEVICE             close the device (the frontend is told) and release it
  pause DEVICE              stop serving the disk without closing it: answers what
                            is in flight, then holds the guest's requests (they wait,
                            they do not fail); returns once drained
  resume DEVICE [TARGET]    serve a paused disk again, from TARGET if given (at least
                            as large; it replaces the backend's params)
  resize DEVICE             announce a grown target's new size to the guest (xbbd
                            also notices growth of files and block devices itself);
                            a connected disk never shrinks
  snapshot create DEVICE STORE [CLUSTER_SIZE]
                            take a point-in-time snapshot of a live disk into the
                            file STORE (must not exist; cluster size default 65536)
  snapshot list [DEVICE]    snapshots, with how much has been copied
  snapshot delete DEVICE ID|STORE [--delete-store]
  fault DEVICE SPEC         fault injection (xbbd started with --fault-injection):
                            off | rate=N[,ops=read+write+flush+discard][,seed=S][,latency=MIN[-MAX]]
                            (N failures per 10000 requests; latency in us, or ms suffix)

DEVICE is DOMID/VDEV, e.g. 3/xvda or 3/51712. In per-disk mode the supervisor's
socket takes every command and passes device commands to the disk's process.

Options:
  -s, --socket PATH   xbbd's control socket (default /run/xbbd/xbbd.sock)
  -j, --json          print the daemon's JSON answer
  -h, --help          this text
)";

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
      case 'h': std::cout << kUsage; return 0;
      default: std::cerr << kUsage; return 2;
    }
  }
  std::vector<std::string> args(argv + optind, argv + argc);
  if (args.empty()) {
    std::cerr << "xbbctl: no command given\n" << kUsage;
    return 2;
  }
  const std::string& command = args[0];
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
    if (args.size() > 2) need(2, "stats [DEVICE]");
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
    std::cerr << "xbbctl: unknown command '" << command << "'\n" << kUsage;
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
