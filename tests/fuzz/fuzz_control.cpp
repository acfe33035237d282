// Fuzz target for the control socket: arbitrary bytes through the framing
// (ControlServer: one JSON object per line, partial lines across reads, a
// client that half-closes), and arbitrary JSON requests through
// Daemon::handle_request (every command, every field of every type,
// including pause, resume and resize, which answer once their work is done).
//
// One daemon runs for the whole fuzzing session in the simulated host
// (DaemonHarness) with fault injection on and a snapshot catalog, serving a
// RAM disk that a software blkfront keeps connected: commands find a real
// device to describe, tune, fault, snapshot and detach. ControlServer itself
// runs on the fuzzing thread and hands each request to the daemon's control
// thread, as the daemon's own socket would; that lets every snapshot store
// path be confined to a scratch directory before the daemon sees it. After
// each input the device is restored if a command detached or paused it, and
// every snapshot taken is deleted, so inputs do not pile up state. Store
// paths and targets other than small RAM disks are confined to the scratch
// directory too: a fuzzed resume must not open a real file.
//
// Invariants (abort on violation): every complete line gets exactly one
// answer, in order, even when the client has already shut down its side;
// every answer is a JSON object with a boolean "ok" and, when false, a
// non-empty "error"; nothing escapes ControlServer; the daemon answers every
// command within seconds (never hangs) and keeps serving its device.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "backend/daemon/ControlServer.hpp"
#include "tests/backend/DaemonHarness.hpp"
#include "tests/fuzz/FuzzSupport.hpp"
#include "xenstore/WithTransaction.hpp"

namespace {

using namespace xbb;
using namespace std::chrono_literals;
using nlohmann::json;

#define CHECK(cond, message) XBB_FUZZ_CHECK("fuzz_control", cond, message)

constexpr xs::DomId kGuest = 1;
constexpr uint32_t kDevid = 51712;  // xvda

// Everything a command can name, for the structured half of the inputs.
const char* const kCommands[] = {"list", "stats", "set", "detach", "fault", "snapshot-create", "snapshot-list",
                                 "snapshot-delete", "pause", "resume", "resize", "", "snapshot-", "LIST", "help"};
const char* const kKeys[] = {"command", "device", "name", "value", "spec", "store", "cluster_size", "snapshot",
                             "delete_store", "target", "x"};
const char* const kStrings[] = {"1/xvda", "1/51712", "1/xvdb", "0/xvda", "1/", "/xvda", "99999999999/xvda",
                                "notify_batch", "notify_delay_us", "max_list_segments", "no_coalesce_reqs",
                                "off", "rate=5000", "rate=10000,ops=read+write,seed=3,latency=1-5ms", "rate=",
                                "/snap-a", "/snap-b", "relative", "/", "..", "/../x", "1", "-1", "4096", "ram:1M", "ram:2M",
                                "ram:512", "ram:0", "/img", "nbd:nbd://127.0.0.1:1/x",
                                "\xff\xfe", "\xc3\x28", "\xed\xa0\x80", ""};

class Session {
 public:
  Session();
  ~Session();
  void run(const uint8_t* data, size_t size);

 private:
  json command(const json& request);
  json request(const json& request);
  json confine(json request) const;
  std::string confine_path(const std::string& path) const;
  void restore_device();
  void forget_snapshots();
  void serve_connection(const std::string& bytes, const std::vector<size_t>& cuts, bool half_close);

  std::string scratch_;
  std::string socket_path_;
  std::unique_ptr<backendtest::DaemonHarness> harness_;
  std::unique_ptr<frontend::InProcessGuest> guest_;
  std::unique_ptr<frontend::SoftBlkfront> disk_;
  std::unique_ptr<backend::ControlServer> server_;
  std::set<int> connections_;  // what the server asked us to watch
};

Session::Session() {
  const std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
  scratch_ = base + "/xbb-fuzz-control-" + std::to_string(::getpid());
  std::filesystem::remove_all(scratch_);
  std::filesystem::create_directories(scratch_ + "/stores");
  socket_path_ = scratch_ + "/control.sock";
  auto options = backendtest::default_options();
  options.vbd.fault_injection = true;
  options.vbd.max_queues = 2;
  options.state_dir = scratch_;
  harness_ = std::make_unique<backendtest::DaemonHarness>(options);
  guest_ = harness_->world().add_guest(kGuest, 1024);
  restore_device();
  server_ = std::make_unique<backend::ControlServer>(
      socket_path_, [this](const json& r, backend::ControlServer::Reply reply) { reply(request(confine(r))); });
}

Session::~Session() {
  server_.reset();
  disk_.reset();
  harness_.reset();
  std::filesystem::remove_all(scratch_);
}

// A request as the daemon's own socket hands it over: Daemon::handle_request
// on the control thread, answered through its reply (at once, or once a
// pause, resume or resize has finished).
json Session::request(const json& r) {
  auto done = std::make_shared<std::promise<json>>();
  auto future = done->get_future();
  harness_->daemon().post([this, r, done] {
    try {
      harness_->daemon().handle_request(r, [done, calls = std::make_shared<int>(0)](json answer) {
        CHECK(++*calls == 1, "a request was answered twice");
        done->set_value(std::move(answer));
      });
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  });
  CHECK(future.wait_for(20s) == std::future_status::ready,
        "the daemon did not answer " + r.dump(-1, ' ', true, json::error_handler_t::replace));
  return future.get();  // an exception travels on to ControlServer, as it would from the daemon's own socket
}

json Session::command(const json& request) {
  auto done = std::make_shared<std::promise<json>>();
  auto future = done->get_future();
  harness_->daemon().post([this, request, done] {
    try {
      done->set_value(harness_->daemon().handle_command(request));
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  });
  CHECK(future.wait_for(20s) == std::future_status::ready, "the daemon did not answer " + request.dump(-1, ' ', true, json::error_handler_t::replace));
  return future.get();  // an exception travels on to ControlServer, as it would from the daemon's own socket
}

// Store paths may only ever land in the scratch directory: "/a/../b" becomes
// SCRATCH/stores/_a_.._b (still absolute, still distinct per input path).
std::string Session::confine_path(const std::string& path) const {
  if (path.empty() || path[0] != '/') return path;  // refused by the daemon as it is
  std::string flat = path.substr(1);
  for (char& c : flat) {
    if (c == '/' || c == '\0') c = '_';
  }
  if (flat.size() > 120) flat.resize(120);
  return scratch_ + "/stores/" + (flat.empty() ? "_" : flat);
}

json Session::confine(json request) const {
  if (!request.is_object()) return request;
  for (const char* key : {"store", "snapshot"}) {
    auto it = request.find(key);
    if (it != request.end() && it->is_string()) *it = confine_path(it->get<std::string>());
  }
  // A resume's new target: RAM disks (ram:SIZE, no image to read) as they
  // are; anything else (a path, nbd:, ram:SIZE:IMAGE) becomes a path in the
  // scratch directory, where nothing exists.
  if (auto it = request.find("target"); it != request.end() && it->is_string()) {
    const std::string target = it->get<std::string>();
    const bool plain_ram = target.rfind("ram:", 0) == 0 && target.find(':', 4) == std::string::npos;
    if (!plain_ram) *it = confine_path("/" + target);
  }
  return request;
}

// Keeps one connected disk for the commands to act on: after a detach (or a
// fault, or a dead worker) the toolstack removes it and adds it again, and
// the guest connects anew.
void Session::restore_device() {
  if (disk_) {
    json answer = command({{"command", "list"}});
    for (const auto& d : answer["devices"]) {
      if (d.value("device", "") == "1/51712" && d.value("phase", "") == "connected" &&
          d.value("target", "") == "ram:1M")
        return;
    }
    try {
      disk_->close();
    } catch (const std::exception&) {
    }
    disk_.reset();
    // What libxl does once its wait for Closed is over (a detached device has
    // answered Closed already and is no longer served, so nobody would answer
    // a second removal): both directories go.
    auto& ts = harness_->toolstack();
    xs::with_transaction(ts.xs(), [&](xs::TxId tx) {
      ts.xs().rm(tx, frontend::SimToolstack::backend_path(kGuest, kDevid));
      ts.xs().rm(tx, frontend::SimToolstack::frontend_path(kGuest, kDevid));
    });
    // The daemon serves a directory again only after it has seen it go: two
    // round trips through its control loop make sure it has processed the
    // removal before the same directory comes back.
    command({{"command", "list"}});
    command({{"command", "list"}});
  }
  frontend::VbdSpec spec;
  spec.domid = kGuest;
  spec.devid = kDevid;
  spec.target = "ram:1M";
  harness_->toolstack().add_vbd(spec);
  frontend::FrontendConfig config;
  config.queues = 2;
  disk_ = guest_->disk(kDevid, config);
  try {
    disk_->connect();
  } catch (const std::exception& e) {
    // The daemon did not serve a disk created anew: say what it and xenstore show.
    auto& ts = harness_->toolstack();
    const std::string be = frontend::SimToolstack::backend_path(kGuest, kDevid);
    std::string nodes;
    if (auto keys = ts.xs().directory(xs::kNoTransaction, be)) {
      for (const auto& k : *keys) nodes += k + "=" + ts.xs().read(xs::kNoTransaction, be + "/" + k).value_or("?") + " ";
    } else {
      nodes = "(no backend directory)";
    }
    CHECK(false, std::string("the disk created anew was not served: ") + e.what() + "; daemon: " +
                     command({{"command", "list"}}).dump() + "; backend: " + nodes);
  }
}

void Session::forget_snapshots() {
  json answer = command({{"command", "snapshot-list"}});
  for (const auto& s : answer.value("snapshots", json::array())) {
    command({{"command", "snapshot-delete"}, {"device", s["device"]}, {"snapshot", s["id"]}, {"delete_store", true}});
  }
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(scratch_ + "/stores", ec))
    std::filesystem::remove_all(entry.path(), ec);
}

// One client connection: the bytes go in the given pieces, the server runs
// between them, a reader thread collects the answers.
void Session::serve_connection(const std::string& bytes, const std::vector<size_t>& cuts, bool half_close) {
  storage::UniqueFd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  CHECK(bool(client), std::string("socket: ") + std::strerror(errno));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
  CHECK(::connect(client.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0,
        std::string("connect: ") + std::strerror(errno));

  auto watch = [this](int fd, bool add) {
    if (add) {
      connections_.insert(fd);
    } else {
      connections_.erase(fd);
    }
  };
  auto serve_all = [&] {
    try {
      server_->on_ready(server_->listen_fd(), watch);
      const std::set<int> fds = connections_;
      for (int fd : fds) server_->on_ready(fd, watch);
    } catch (const std::exception& e) {
      CHECK(false, std::string("an exception escaped ControlServer: ") + e.what());
    }
  };

  std::string answers;
  std::thread reader([&] {
    char chunk[4096];
    for (;;) {
      const ssize_t n = ::recv(client.get(), chunk, sizeof chunk, 0);
      if (n <= 0) break;
      answers.append(chunk, size_t(n));
    }
  });

  size_t at = 0;
  for (size_t cut : cuts) {
    const size_t end = std::min(bytes.size(), std::max(at, cut));
    const ssize_t n = ::send(client.get(), bytes.data() + at, end - at, MSG_NOSIGNAL);
    CHECK(n == ssize_t(end - at), "a short send to the control socket");
    at = end;
    serve_all();
  }
  if (at < bytes.size()) {
    CHECK(::send(client.get(), bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL) == ssize_t(bytes.size() - at),
          "a short send to the control socket");
  }
  if (half_close) ::shutdown(client.get(), SHUT_WR);
  serve_all();
  // The whole request stream is in; let the server see our end close.
  ::shutdown(client.get(), SHUT_WR);
  serve_all();
  CHECK(connections_.empty(), "the server kept a connection its client had closed");
  reader.join();

  // One answer per complete line, for streams the server keeps (it drops a
  // client whose unterminated line passes 64 KiB).
  size_t lines = 0;
  for (char c : bytes) lines += c == '\n';
  std::vector<json> parsed;
  size_t pos = 0;
  for (size_t nl; (nl = answers.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    json a;
    try {
      a = json::parse(answers.substr(pos, nl - pos));
    } catch (const json::exception& e) {
      CHECK(false, std::string("an answer is not JSON: ") + e.what());
    }
    CHECK(a.is_object() && a.contains("ok") && a["ok"].is_boolean(), "an answer without a boolean \"ok\": " + a.dump());
    if (!a["ok"].get<bool>()) {
      CHECK(a.contains("error") && a["error"].is_string() && !a["error"].get<std::string>().empty(),
            "a refusal without an error message: " + a.dump());
    }
    parsed.push_back(std::move(a));
  }
  CHECK(pos == answers.size(), "an unterminated answer");
  CHECK(parsed.size() == lines, std::to_string(lines) + " request lines, " + std::to_string(parsed.size()) + " answers");
}

// Builds request lines from the input: mostly well-formed objects of known
// commands and keys with values of every JSON type, sometimes raw bytes.
std::string structured(fuzz::Input& in) {
  std::string out;
  const unsigned lines = 1 + in.u8() % 6;
  auto value = [&](auto& self, unsigned depth) -> json {
    switch (in.u8() % 12) {
      case 0: case 1: case 2: return kStrings[in.u8() % std::size(kStrings)];
      case 3: return kCommands[in.u8() % std::size(kCommands)];
      case 4: return int64_t(in.u64());
      case 5: return in.u32();
      case 6: return bool(in.u8() & 1);
      case 7: return nullptr;
      case 8: return double(int32_t(in.u32())) / 7.0;
      case 9: {
        json a = json::array();
        if (depth < 3)
          for (unsigned n = in.u8() % 3; n > 0; --n) a.push_back(self(self, depth + 1));
        return a;
      }
      case 10: return in.bytes(16);
      default: {
        json o = json::object();
        if (depth < 3)
          for (unsigned n = in.u8() % 3; n > 0; --n) o[kKeys[in.u8() % std::size(kKeys)]] = self(self, depth + 1);
        return o;
      }
    }
  };
  for (unsigned l = 0; l < lines && !in.empty(); ++l) {
    const uint8_t kind = in.u8();
    if (kind % 8 == 0) {
      out += in.bytes(40);
      out += '\n';
      continue;
    }
    json request = json::object();
    if (kind % 8 != 1) request["command"] = kCommands[in.u8() % std::size(kCommands)];
    for (unsigned n = in.u8() % 5; n > 0; --n) request[kKeys[in.u8() % std::size(kKeys)]] = value(value, 0);
    // Invalid UTF-8 goes on the wire as it is: a client may send anything.
    out += request.dump(-1, ' ', false, json::error_handler_t::ignore);
    out += '\n';
  }
  return out;
}

void Session::run(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t mode = in.u8();
  const uint8_t framing = in.u8();
  std::string bytes;
  if (mode & 1) {
    bytes = structured(in);
  } else {
    bytes.assign(reinterpret_cast<const char*>(in.rest()), in.rest_size());
    in.skip_all();
  }
  // Where the stream is cut between reads: up to three places.
  std::vector<size_t> cuts;
  for (unsigned n = framing % 4; n > 0 && !bytes.empty(); --n) cuts.push_back((size_t(framing) * 131 * n) % bytes.size());
  std::sort(cuts.begin(), cuts.end());
  serve_connection(bytes, cuts, framing & 0x80);
  forget_snapshots();
  restore_device();
  CHECK(harness_->running(), "the daemon's control loop ended");
}

Session* session = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // XBB_FUZZ_LOG=1 keeps the daemon's log (for reading a failing input).
  if (!std::getenv("XBB_FUZZ_LOG")) spdlog::set_level(spdlog::level::off);
  session = new Session();
  // The session (a daemon thread, a guest) lives as long as the process.
  std::atexit([] {
    delete session;
    session = nullptr;
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  session->run(data, size);
  return 0;
}
