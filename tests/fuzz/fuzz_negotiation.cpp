// Fuzz target for the xenbus handshake as a guest drives it: every node a
// frontend can write (device/vbd/N/state, ring-ref, ring-page-order,
// ring-refN, event-channel, protocol, feature-persistent,
// multi-queue-num-queues, queue-K/...), with any value, in any order and at
// every state of the backend, interleaved with what the toolstack and the
// administrator do (removal, domain death, detach, pause, resume on the same
// or a new target, resize, a daemon restart that adopts the rings, re-adding
// the disk) and with the storage open finishing (or failing) at any point.
//
// The real backend code runs: backend::Vbd's state machine (and through it
// read_frontend_rings) on a simulated xenstore (SimStore, with xenstored's
// permissions and watches). Watch events are routed to the Vbd exactly as
// Daemon::on_watch routes them. The hypervisor is a fake: it maps plain
// zeroed memory, binds ports that never fire, and fails maps or binds where
// the input says so. With no request on the rings the workers only start and
// stop, so one execution costs a few threads at most and stays deterministic:
// after every operation the harness waits until nothing is left in flight
// (storage opener, workers stopping) before it checks.
//
// Invariants (abort on violation):
//  - no exception escapes the Vbd;
//  - a map asks for exactly the ring pages the frontend advertised, never
//    more than max-ring-page-order allows, for the grant refs the frontend
//    wrote, only while the frontend is Initialised or Connected, and for no
//    more queues than multi-queue-max-queues; binds are for the ports the
//    frontend wrote;
//  - whatever is mapped or bound belongs to a connected Vbd's queues, and
//    nothing is mapped, bound or left running once it is released (no grant
//    handle closes with a mapping left);
//  - a frontend that says Initialised/Connected to a backend in InitWait with
//    its storage open is never left waiting: it is connected as it asked, or
//    refused with an `error` node and Closing;
//  - Connected on our side means Connected in xenstore, and a frontend that
//    is Closing or Closed is never left facing Connected;
//  - once the toolstack removes the disk (online=0) and the frontend is done,
//    or the frontend or backend directory vanishes, the Vbd is released and
//    the backend says Closed;
//  - every pause, resume and resize is answered, exactly once;
//  - the backend's state node always holds a valid state.
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "backend/engine/Vbd.hpp"
#include "storage/OpenError.hpp"
#include "storage/Target.hpp"
#include "tests/frontend/SimToolstack.hpp"
#include "tests/fuzz/FuzzSupport.hpp"
#include "tests/sim/xenstore/SimXenStore.hpp"
#include "xenstore/WithTransaction.hpp"
#include "xenstore/XenbusState.hpp"
#include "xenstore/XenstoreKeys.hpp"

namespace {

using namespace xbb;
using namespace std::chrono_literals;
using xs::XenbusState;

#define CHECK(cond, message) XBB_FUZZ_CHECK("fuzz_negotiation", cond, message)

constexpr xs::DomId kGuest = 7;
constexpr uint32_t kDevid = 51712;  // xvda
constexpr unsigned kMaxOps = 48;    // keeps one execution in the milliseconds

const std::string kFrontend = frontend::SimToolstack::frontend_path(kGuest, kDevid);
const std::string kBackend = frontend::SimToolstack::backend_path(kGuest, kDevid);

// ---------------------------------------------------------------------------
// The reference model: what the frontend wrote (relative node -> value) and
// what a backend must make of it. Written from the rules in DESIGN.md §4 and
// FrontendRings.hpp, not from the parser.

using Nodes = std::map<std::string, std::string>;

std::optional<uint64_t> model_uint(const Nodes& n, const std::string& key, uint64_t max) {
  auto it = n.find(key);
  if (it == n.end() || it->second.empty() || it->second.size() > 20) return std::nullopt;
  unsigned __int128 v = 0;
  for (char c : it->second) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + unsigned(c - '0');
  }
  if (v > max) return std::nullopt;
  return uint64_t(v);
}

std::optional<XenbusState> model_state(const Nodes& n) {
  auto v = model_uint(n, "state", 8);
  if (!v) return std::nullopt;
  return XenbusState(*v);
}

struct ExpectedRings {
  bool valid = false;
  unsigned order = 0;
  std::vector<std::vector<uint32_t>> refs;  // per queue
  std::vector<uint32_t> ports;
};

ExpectedRings expect_rings(const Nodes& n, unsigned max_order, unsigned max_queues) {
  ExpectedRings e;
  if (auto p = n.find("protocol"); p != n.end()) {
    if (!p->second.empty() && p->second != "x86_32-abi" && p->second != "x86_64-abi") return e;
  }
  if (n.count("ring-page-order")) {
    auto order = model_uint(n, "ring-page-order", max_order);
    if (!order) return e;
    e.order = unsigned(*order);
  }
  unsigned queues = 1;
  if (n.count("multi-queue-num-queues")) {
    auto q = model_uint(n, "multi-queue-num-queues", max_queues);
    if (!q || *q == 0) return e;
    queues = unsigned(*q);
  }
  const unsigned pages = 1u << e.order;
  for (unsigned q = 0; q < queues; ++q) {
    const std::string dir = queues == 1 ? "" : "queue-" + std::to_string(q) + "/";
    std::vector<uint32_t> refs;
    if (pages == 1 && n.count(dir + "ring-ref")) {
      auto ref = model_uint(n, dir + "ring-ref", UINT32_MAX);
      if (!ref) return e;
      refs.push_back(uint32_t(*ref));
    } else {
      for (unsigned i = 0; i < pages; ++i) {
        auto ref = model_uint(n, dir + "ring-ref" + std::to_string(i), UINT32_MAX);
        if (!ref) return e;
        refs.push_back(uint32_t(*ref));
      }
    }
    auto port = model_uint(n, dir + "event-channel", UINT32_MAX);
    if (!port) return e;
    e.refs.push_back(std::move(refs));
    e.ports.push_back(uint32_t(*port));
  }
  e.valid = true;
  return e;
}

// ---------------------------------------------------------------------------
// The fake hypervisor. Maps and binds are checked against the model on the
// control thread (connect runs there); unmaps and unbinds also come from
// worker threads as they exit, so the ledger takes a lock.

struct Ledger {
  std::mutex mu;
  std::map<void*, size_t> mappings;  // address -> pages
  size_t bound = 0;
  std::vector<std::string> violations;  // found off the control thread; reported by it
};

class Harness;

class FakeGrantTable final : public ports::GrantTable {
 public:
  FakeGrantTable(Harness& h, Ledger& ledger) : h_(h), ledger_(ledger) {}
  ~FakeGrantTable() override {
    std::lock_guard lock(ledger_.mu);
    if (!mine_.empty()) ledger_.violations.push_back("a grant handle was closed with ring pages still mapped");
    for (auto& [address, pages] : mine_) {
      ledger_.mappings.erase(address);
      std::free(address);
    }
  }
  void* map(ports::DomId domid, std::span<const ports::GrantRef> refs, bool writable) override;
  int unmap(void* address, size_t pages) override {
    std::lock_guard lock(ledger_.mu);
    auto it = mine_.find(address);
    if (it == mine_.end() || it->second != pages) {
      ledger_.violations.push_back("unmap of something this handle did not map");
      return -EINVAL;
    }
    ledger_.mappings.erase(address);
    mine_.erase(it);
    std::free(address);
    return 0;
  }
  int copy(std::span<ports::GrantCopySegment>) override {
    std::lock_guard lock(ledger_.mu);
    ledger_.violations.push_back("grant copy although no request was ever put on a ring");
    return -EINVAL;
  }
  size_t mapped_pages() const override {
    std::lock_guard lock(ledger_.mu);
    size_t n = 0;
    for (auto& [address, pages] : mine_) n += pages;
    return n;
  }

 private:
  friend class Harness;
  Harness& h_;
  Ledger& ledger_;
  std::map<void*, size_t> mine_;
};

class FakeEventChannel final : public ports::EventChannel {
 public:
  FakeEventChannel(Harness& h, Ledger& ledger) : h_(h), ledger_(ledger), fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  }
  ~FakeEventChannel() override {
    std::lock_guard lock(ledger_.mu);
    ledger_.bound -= bound_.size();  // closing the handle unbinds, as the evtchn device does
    ::close(fd_);
  }
  std::optional<ports::EvtchnPort> bind_interdomain(ports::DomId domid, ports::EvtchnPort remote) override;
  int unbind(ports::EvtchnPort port) override {
    std::lock_guard lock(ledger_.mu);
    if (!bound_.erase(port)) {
      ledger_.violations.push_back("unbind of a port this handle did not bind");
      return -EINVAL;
    }
    --ledger_.bound;
    return 0;
  }
  int notify(ports::EvtchnPort port) override {
    std::lock_guard lock(ledger_.mu);
    if (!bound_.count(port)) ledger_.violations.push_back("notify on an unbound port");
    return 0;
  }
  int fd() const override { return fd_; }
  std::optional<ports::EvtchnPort> pending() override { return std::nullopt; }
  int unmask(ports::EvtchnPort) override { return 0; }

 private:
  Harness& h_;
  Ledger& ledger_;
  int fd_;
  std::set<ports::EvtchnPort> bound_;
  ports::EvtchnPort next_ = 1;
};

class FakeHypervisor final : public ports::Hypervisor {
 public:
  FakeHypervisor(Harness& h, Ledger& ledger) : h_(h), ledger_(ledger) {}
  std::unique_ptr<ports::GrantTable> open_grant_table() override {
    return std::make_unique<FakeGrantTable>(h_, ledger_);
  }
  std::unique_ptr<ports::EventChannel> open_event_channel() override {
    return std::make_unique<FakeEventChannel>(h_, ledger_);
  }
  bool domain_exists(ports::DomId domid) override { return domid != kGuest || guest_alive; }
  bool guest_alive = true;

 private:
  Harness& h_;
  Ledger& ledger_;
};

// ---------------------------------------------------------------------------
// Storage opening, held at a gate until the input says it finishes, so that
// frontend and toolstack operations land before, during and after it.

struct OpenGate {
  std::mutex mu;
  std::condition_variable cv;
  bool released = false;
  bool fail = false;
};

// What the Vbd's helper threads reach: its posts and storage opens. The
// storage opener is a detached thread that may finish after the Vbd, or the
// whole harness, is gone, so this lives as long as the last one holds it.
struct Shared {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<uint64_t, std::function<void(backend::Vbd&)>>> posted;
  std::map<std::string, std::shared_ptr<OpenGate>> gates;  // by target; others open at once
  uint64_t ram_bytes = 64 * 1024;                           // what a RAM target opens with
  bool closed = false;                                      // the harness is gone
  // Results of storage opens posted, per Vbd instance (an opener thread
  // posts exactly once, after its open).
  std::map<uint64_t, unsigned> opener_posts;
  static thread_local bool on_opener_thread;

  unsigned opens_posted(uint64_t instance) {
    std::lock_guard lock(mu);
    auto it = opener_posts.find(instance);
    return it == opener_posts.end() ? 0 : it->second;
  }
  void post(uint64_t instance, std::function<void(backend::Vbd&)> fn) {
    {
      std::lock_guard lock(mu);
      if (on_opener_thread) ++opener_posts[instance];
      if (closed) return;
      posted.emplace_back(instance, std::move(fn));
    }
    cv.notify_all();
  }
  std::unique_ptr<storage::Storage> open(const std::string& target, bool read_only) {
    on_opener_thread = true;
    std::shared_ptr<OpenGate> gate;
    uint64_t bytes;
    {
      std::lock_guard lock(mu);
      if (auto it = gates.find(target); it != gates.end()) gate = it->second;
      bytes = ram_bytes;
    }
    if (gate) {
      std::unique_lock lock(gate->mu);
      gate->cv.wait(lock, [&] { return gate->released; });
      if (gate->fail) throw storage::StorageError("fuzz: the storage target refuses to open");
    }
    if (target.find("fail") != std::string::npos) throw storage::StorageError("fuzz: no such target");
    storage::OpenOptions o;
    o.read_only = read_only;
    return storage::open_target("ram:" + std::to_string(bytes), o);
  }
};

thread_local bool Shared::on_opener_thread = false;

// ---------------------------------------------------------------------------

struct Config {
  unsigned max_queues = 1;
  unsigned max_order = 0;
  bool persistent = false;
  bool fault_injection = false;
  bool read_only = false;
  bool cdrom = false;
  uint16_t map_fail_mask = 0;   // map call k (mod 16) fails when bit k is set
  uint16_t bind_fail_mask = 0;  // likewise for binds
};

class Harness {
 public:
  explicit Harness(const Config& config);
  ~Harness();
  void run(fuzz::Input& in);

  // Called by the fakes on the control thread.
  void on_map(ports::DomId domid, std::span<const ports::GrantRef> refs, bool& fail);
  void on_bind(ports::DomId domid, ports::EvtchnPort remote, bool& fail);

 private:
  struct Before {
    bool had_vbd = false;
    std::string phase;
    bool storage_ready = false;
  };

  void add_disk();
  void start_vbd();
  void drop_vbd();
  backend::Vbd::Done answer_once(const char* what);
  void settle();
  bool route(const xs::WatchEvent& event);
  bool run_posted();
  bool awaiting_thread();
  nlohmann::json describe();
  void check(const Before& before, unsigned op);
  void drain_violations();

  // Guest and toolstack operations; xenstore refusals are the guest's problem.
  void guest_write(const std::string& node, const std::string& value);
  void guest_rm(const std::string& node);
  void one_op(fuzz::Input& in, unsigned& op);
  std::string pick_node(fuzz::Input& in);
  std::string pick_value(fuzz::Input& in);
  void publish_good_rings(fuzz::Input& in);

  template <class F>
  void vbd_call(const char* what, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      CHECK(false, std::string("an exception escaped Vbd::") + what + ": " + e.what());
    }
  }

  Config config_;
  // XBB_FUZZ_TRACE=1: every operation and the states after it, on stderr
  // (for reading a failing input).
  const bool trace_ = std::getenv("XBB_FUZZ_TRACE") != nullptr;
  Ledger ledger_;
  FakeHypervisor hypervisor_{*this, ledger_};
  std::shared_ptr<sim::SimStore> store_;
  std::unique_ptr<frontend::SimToolstack> toolstack_;
  std::unique_ptr<sim::SimXenStore> dom0_;   // the daemon's connection
  std::unique_ptr<sim::SimXenStore> guest_;  // the guest's own
  backend::VbdOptions options_;
  backend::VbdHost host_;
  std::unique_ptr<backend::Vbd> vbd_;
  bool admin_touched_ = false;  // detach or shutdown: released on the administrator's terms
  Nodes model_;                 // the frontend directory, relative paths

  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
  std::shared_ptr<OpenGate> gate_;  // the current Vbd's first storage open
  std::string target_;              // the current disk's params
  unsigned generation_ = 0;
  unsigned awaited_ = 0;            // administrator requests not answered yet
  bool answered_twice_ = false;

  // Per operation.
  unsigned map_calls_ = 0, bind_calls_ = 0;
  unsigned map_index_ = 0, bind_index_ = 0;  // within the connect in progress
  bool hypervisor_refused_ = false;
  unsigned total_maps_ = 0, total_binds_ = 0;
};

void* FakeGrantTable::map(ports::DomId domid, std::span<const ports::GrantRef> refs, bool) {
  bool fail = false;
  h_.on_map(domid, refs, fail);
  if (fail) {
    errno = EINVAL;
    return nullptr;
  }
  void* p = std::aligned_alloc(ports::kPageSize, refs.size() * ports::kPageSize);
  std::memset(p, 0, refs.size() * ports::kPageSize);
  std::lock_guard lock(ledger_.mu);
  ledger_.mappings[p] = refs.size();
  mine_[p] = refs.size();
  return p;
}

std::optional<ports::EvtchnPort> FakeEventChannel::bind_interdomain(ports::DomId domid, ports::EvtchnPort remote) {
  bool fail = false;
  h_.on_bind(domid, remote, fail);
  if (fail) {
    errno = EINVAL;
    return std::nullopt;
  }
  std::lock_guard lock(ledger_.mu);
  const auto port = next_++;
  bound_.insert(port);
  ++ledger_.bound;
  return port;
}

Harness::Harness(const Config& config)
    : config_(config),
      store_(frontend::parts::make_store()),
      dom0_(std::make_unique<sim::SimXenStore>(store_, 0)),
      host_{*dom0_, hypervisor_, options_, nullptr, nullptr, nullptr} {
  toolstack_ = std::make_unique<frontend::SimToolstack>(store_);
  guest_ = std::make_unique<sim::SimXenStore>(store_, kGuest);
  options_.max_queues = config.max_queues;
  options_.max_ring_page_order = config.max_order;
  options_.persistent_grants = config.persistent;
  options_.persistent_grants_per_queue = 8;
  options_.bounce_pages_per_queue = 8;
  options_.fault_injection = config.fault_injection;
  options_.claim_targets = false;  // RAM: nothing to claim
  host_.post = [shared = shared_](uint64_t instance, std::function<void(backend::Vbd&)> fn) {
    shared->post(instance, std::move(fn));
  };
  host_.open_storage = [shared = shared_](const std::string& target, bool read_only) {
    return shared->open(target, read_only);
  };
  dom0_->watch("@releaseDomain", "release");
  toolstack_->create_domain(kGuest);
  add_disk();
  settle();
}

Harness::~Harness() {
  drop_vbd();
  settle();
  {
    std::lock_guard lock(shared_->mu);
    shared_->closed = true;
    shared_->posted.clear();
  }
  std::lock_guard lock(ledger_.mu);
  CHECK(ledger_.mappings.empty(), "ring pages still mapped after every Vbd is gone");
  CHECK(ledger_.bound == 0, "event channels still bound after every Vbd is gone");
  CHECK(ledger_.violations.empty(), ledger_.violations.empty() ? "" : ledger_.violations.front());
}

void Harness::add_disk() {
  frontend::VbdSpec spec;
  spec.domid = kGuest;
  spec.devid = kDevid;
  spec.target = target_ = "fuzz-" + std::to_string(++generation_);
  spec.writable = !config_.read_only;
  spec.device_type = config_.cdrom ? "cdrom" : "disk";
  toolstack_->add_vbd(spec);
  model_ = {{"backend", kBackend}, {"backend-id", "0"}, {"state", "1"}, {"virtual-device", std::to_string(kDevid)},
            {"device-type", spec.device_type}, {"trusted", "1"}};
  admin_touched_ = false;
  start_vbd();
}

// A Vbd for the disk's directories as they are: a new disk, or (after a
// restart) one whose live connection it adopts.
void Harness::start_vbd() {
  // A resume on a new target rewrote params: that is what the next xbbd opens.
  target_ = dom0_->read(xs::kNoTransaction, kBackend + "/params").value_or(target_);
  gate_ = std::make_shared<OpenGate>();
  {
    std::lock_guard lock(shared_->mu);
    shared_->gates[target_] = gate_;
  }
  xs::BackendPath path;
  path.type = "vbd";
  path.frontend_domid = kGuest;
  path.devid = kDevid;
  path.path = kBackend;
  vbd_ = std::make_unique<backend::Vbd>(host_, path);
  bool started = false;
  vbd_call("start", [&] { started = vbd_->start(); });
  CHECK(started, "a well-formed backend directory written by the toolstack was refused");
  dom0_->watch(kBackend, "backend");
  dom0_->watch(kFrontend, "frontend");
}

// As Daemon::drop_released, and at the end: a Vbd goes once released. Its
// storage open, if still held at the gate, is let go (failing) so that its
// detached thread ends; what it posts then reaches no Vbd.
void Harness::drop_vbd() {
  if (!vbd_) return;
  {
    std::lock_guard lock(gate_->mu);
    gate_->released = true;
    gate_->fail = true;
  }
  gate_->cv.notify_all();
  dom0_->unwatch(kBackend, "backend");
  dom0_->unwatch(kFrontend, "frontend");
  vbd_.reset();
}

nlohmann::json Harness::describe() {
  nlohmann::json d;
  vbd_call("describe", [&] { vbd_->describe(d); });
  return d;
}

// Whether a helper thread of the Vbd owes it a post: the first storage
// open once its gate is released, a reopen (resume, resize), or workers asked
// to stop.
bool Harness::awaiting_thread() {
  if (!vbd_ || vbd_->released()) return false;
  {
    std::lock_guard lock(gate_->mu);
    if (gate_->released && shared_->opens_posted(vbd_->instance()) == 0) return true;
  }
  const auto d = describe();
  const std::string phase = d["phase"];
  if (phase == "reopening") return true;
  return d["queues"].get<size_t>() > 0 && (phase == "closing" || phase == "releasing" || phase == "pausing");
}

bool Harness::run_posted() {
  std::deque<std::pair<uint64_t, std::function<void(backend::Vbd&)>>> batch;
  {
    std::lock_guard lock(shared_->mu);
    batch.swap(shared_->posted);
  }
  for (auto& posted : batch) {
    // As the daemon's post box: only to the Vbd instance that posted it.
    if (vbd_ && vbd_->instance() == posted.first) vbd_call("(posted callback)", [&] { posted.second(*vbd_); });
  }
  return !batch.empty();
}

// Daemon::on_watch, for the one device.
bool Harness::route(const xs::WatchEvent& event) {
  if (!vbd_) return false;
  if (event.token == "backend") {
    std::string sub;
    if (event.path.size() > kBackend.size()) sub = event.path.substr(kBackend.size() + 1);
    if (sub.empty() || sub == "online" || sub == "state") vbd_call("on_backend_changed", [&] { vbd_->on_backend_changed(); });
  } else if (event.token == "frontend") {
    vbd_call("on_frontend_changed", [&] { vbd_->on_frontend_changed(); });
  } else if (event.token == "release") {
    if (!hypervisor_.domain_exists(kGuest)) vbd_call("on_domain_gone", [&] { vbd_->on_domain_gone(); });
  }
  return true;
}

void Harness::settle() {
  for (unsigned rounds = 0;; ++rounds) {
    CHECK(rounds < 10000, "the control thread never settles (a watch or post loop)");
    bool busy = false;
    while (auto event = dom0_->read_watch()) busy |= route(*event);
    busy |= run_posted();
    if (vbd_ && vbd_->released()) {
      drop_vbd();
      busy = true;
    }
    if (busy) continue;
    if (!awaiting_thread()) break;
    std::unique_lock lock(shared_->mu);
    const bool arrived = shared_->cv.wait_for(lock, 10s, [&] { return !shared_->posted.empty(); });
    CHECK(arrived, "a storage open or a stopping worker never reported back (phase " +
                       describe()["phase"].get<std::string>() + ")");
  }
}

void Harness::drain_violations() {
  std::lock_guard lock(ledger_.mu);
  CHECK(ledger_.violations.empty(), ledger_.violations.empty() ? "" : ledger_.violations.front());
}

void Harness::on_map(ports::DomId domid, std::span<const ports::GrantRef> refs, bool& fail) {
  CHECK(domid == kGuest, "maps grants of domain " + std::to_string(domid));
  CHECK(refs.size() <= (1u << config_.max_order),
        "maps " + std::to_string(refs.size()) + " ring pages, more than max-ring-page-order " +
            std::to_string(config_.max_order) + " allows");
  const auto state = model_state(model_);
  CHECK(state == XenbusState::Initialised || state == XenbusState::Connected,
        "maps rings of a frontend that is not Initialised or Connected");
  const auto expected = expect_rings(model_, config_.max_order, config_.max_queues);
  CHECK(expected.valid, "maps rings although the frontend's keys are invalid");
  CHECK(map_index_ < expected.refs.size(), "maps more queues than the frontend asked for");
  CHECK(refs.size() == (1u << expected.order), "maps " + std::to_string(refs.size()) +
                                                   " pages for a ring of order " + std::to_string(expected.order));
  CHECK(std::equal(refs.begin(), refs.end(), expected.refs[map_index_].begin(), expected.refs[map_index_].end()),
        "maps grant refs the frontend did not write for queue " + std::to_string(map_index_));
  ++map_index_;
  ++map_calls_;
  CHECK(map_calls_ <= config_.max_queues, "more ring maps in one handshake than multi-queue-max-queues");
  fail = (config_.map_fail_mask >> (total_maps_++ % 16)) & 1;
  hypervisor_refused_ |= fail;
}

void Harness::on_bind(ports::DomId domid, ports::EvtchnPort remote, bool& fail) {
  CHECK(domid == kGuest, "binds a port of domain " + std::to_string(domid));
  const auto expected = expect_rings(model_, config_.max_order, config_.max_queues);
  CHECK(expected.valid && bind_index_ < expected.ports.size(), "binds a port the frontend never offered");
  CHECK(remote == expected.ports[bind_index_], "binds port " + std::to_string(remote) + " for queue " +
                                                   std::to_string(bind_index_) + ", not the one the frontend wrote");
  ++bind_index_;
  ++bind_calls_;
  fail = (config_.bind_fail_mask >> (total_binds_++ % 16)) & 1;
  hypervisor_refused_ |= fail;
}

// A Done for an administrator's request, checked to be called exactly once.
backend::Vbd::Done Harness::answer_once(const char* what) {
  ++awaited_;
  auto calls = std::make_shared<unsigned>(0);
  return [this, calls, what](std::optional<std::string>) {
    if (++*calls == 1) {
      --awaited_;
    } else {
      answered_twice_ = true;
      std::fprintf(stderr, "fuzz_negotiation: %s answered twice\n", what);
    }
  };
}

void Harness::guest_write(const std::string& node, const std::string& value) {
  try {
    guest_->write(xs::kNoTransaction, kFrontend + "/" + node, value);
  } catch (const xs::Error&) {
    return;  // too long, no permission, domain gone: xenstored says no
  }
  // Writes create missing parents with empty values.
  for (size_t slash = node.find('/'); slash != std::string::npos; slash = node.find('/', slash + 1))
    model_.try_emplace(node.substr(0, slash), "");
  model_[node] = value;
}

void Harness::guest_rm(const std::string& node) {
  try {
    guest_->rm(xs::kNoTransaction, node.empty() ? kFrontend : kFrontend + "/" + node);
  } catch (const xs::Error&) {
    return;
  }
  if (node.empty()) {
    model_.clear();
    return;
  }
  for (auto it = model_.begin(); it != model_.end();) {
    if (it->first == node || it->first.rfind(node + "/", 0) == 0) {
      it = model_.erase(it);
    } else {
      ++it;
    }
  }
}

std::string Harness::pick_node(fuzz::Input& in) {
  const uint8_t which = in.u8();
  const unsigned index = in.u8() % 36;  // ring-refN beyond order 5 too
  const std::string queue = "queue-" + std::to_string(in.u8() % 10) + "/";
  switch (which % 16) {
    case 0: return "state";
    case 1: return "ring-ref";
    case 2: return "ring-page-order";
    case 3: return "ring-ref" + std::to_string(index);
    case 4: return "event-channel";
    case 5: return "protocol";
    case 6: return "feature-persistent";
    case 7: return "multi-queue-num-queues";
    case 8: return queue + "ring-ref";
    case 9: return queue + "ring-ref" + std::to_string(index);
    case 10: return queue + "event-channel";
    case 11: return queue.substr(0, queue.size() - 1);
    case 12: return "backend";
    case 13: return "backend-id";
    case 14: return queue + "protocol";
    default: {
      std::string name = in.bytes(12);
      for (char& c : name) c = (c == '/' || c == 0) ? '_' : c;
      return name.empty() ? "x" : name;
    }
  }
}

std::string Harness::pick_value(fuzz::Input& in) {
  const uint8_t which = in.u8();
  switch (which % 16) {
    case 0: case 1: case 2: return std::to_string(in.u8() % 12);
    case 3: return std::to_string(in.u32());
    case 4: return "";
    case 5: return "18446744073709551615";
    case 6: return "18446744073709551616";
    case 7: return "4294967296";
    case 8: return "-1";
    case 9: {  // " 1", "1\0", "\0x": space and NUL inside numbers
      static constexpr char kOdd[] = " 1\0x";
      return std::string(&kOdd[in.u8() % 3], 2);
    }
    case 10: return "x86_32-abi";
    case 11: return "x86_64-abi";
    case 12: return std::string(size_t(in.u8()) * 17 + 1, char('0' + in.u8() % 10));
    case 13: return "0" + std::to_string(in.u8());
    default: return in.bytes(24);
  }
}

// A well-formed set of keys, as a Linux guest writes them in one
// transaction, for q queues of order o (sometimes beyond the limits), then
// Initialised: the shortest way into Connected, from where the rest starts.
void Harness::publish_good_rings(fuzz::Input& in) {
  const unsigned queues = 1 + in.u8() % (config_.max_queues + 1);
  const unsigned order = in.u8() % (config_.max_order + 2);
  const uint8_t style = in.u8();
  uint32_t ref = in.u16();
  Nodes written;
  try {
    xs::with_transaction(*guest_, [&](xs::TxId tx) {
      written.clear();
      auto put = [&](const std::string& node, const std::string& value) {
        guest_->write(tx, kFrontend + "/" + node, value);
        written[node] = value;
      };
      auto put_queue = [&](const std::string& dir) {
        const unsigned pages = 1u << order;
        if (pages == 1 && (style & 1)) {
          put(dir + "ring-ref", std::to_string(ref++));
        } else {
          for (unsigned i = 0; i < pages; ++i) put(dir + "ring-ref" + std::to_string(i), std::to_string(ref++));
        }
        put(dir + "event-channel", std::to_string(ref % 1024));
      };
      if (order > 0 || (style & 2)) put("ring-page-order", std::to_string(order));
      if (queues == 1 && !(style & 4)) {
        put_queue("");
      } else {
        put("multi-queue-num-queues", std::to_string(queues));
        for (unsigned q = 0; q < queues; ++q) {
          written["queue-" + std::to_string(q)] = "";
          put_queue("queue-" + std::to_string(q) + "/");
        }
      }
      if (style & 8) put("protocol", (style & 16) ? "x86_32-abi" : "x86_64-abi");
      put("feature-persistent", (style & 32) ? "1" : "0");
      put("state", "3");
    });
  } catch (const xs::Error&) {
    return;
  }
  for (auto& [node, value] : written) model_[node] = value;
}

void Harness::one_op(fuzz::Input& in, unsigned& op) {
  op = in.u8() % 25;
  switch (op) {
    case 0: case 1: case 2: case 3: case 4: {  // the guest writes a node
      const std::string node = pick_node(in);
      guest_write(node, pick_value(in));
      break;
    }
    case 5:  // the guest removes a node
      guest_rm(pick_node(in));
      break;
    case 6: case 7: {  // the guest moves its state
      static const char* kStates[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "", "03", "4 "};
      guest_write("state", kStates[in.u8() % 13]);
      break;
    }
    case 8:
      publish_good_rings(in);
      break;
    case 9: {  // the storage open finishes
      const bool fail = (in.u8() % 4) == 0;
      {
        std::lock_guard lock(gate_->mu);
        if (!gate_->released) gate_->fail = fail;
        gate_->released = true;
      }
      gate_->cv.notify_all();
      break;
    }
    case 10:  // libxl's device remove, first half: online=0 and state=5 together
      try {
        xs::with_transaction(toolstack_->xs(), [&](xs::TxId tx) {
          if (!toolstack_->xs().read(tx, kBackend + "/state")) return;
          toolstack_->xs().write(tx, kBackend + "/online", "0");
          toolstack_->xs().write(tx, kBackend + "/state", "5");
        });
      } catch (const xs::Error&) {
      }
      break;
    case 11:  // ... and the second: both directories go (after Closed, or its timeout)
      xs::with_transaction(toolstack_->xs(), [&](xs::TxId tx) {
        toolstack_->xs().rm(tx, kBackend);
        toolstack_->xs().rm(tx, kFrontend);
      });
      model_.clear();
      break;
    case 12:  // the guest removes its whole frontend directory
      guest_rm("");
      break;
    case 13:  // xl destroy: the domain dies, its nodes go (or not)
      if (!hypervisor_.guest_alive) break;
      hypervisor_.guest_alive = false;
      toolstack_->destroy_domain(kGuest, in.u8() & 1);
      if (!dom0_->read(xs::kNoTransaction, kFrontend).has_value()) model_.clear();
      break;
    case 14:  // xbbctl detach
      if (vbd_) {
        admin_touched_ = true;
        vbd_call("detach", [&] { vbd_->detach(); });
      }
      break;
    case 15:  // SIGTERM: the rings are let go, xenstore stays for the next xbbd
      if (vbd_) {
        admin_touched_ = true;
        vbd_call("quiesce_for_shutdown", [&] { vbd_->quiesce_for_shutdown(); });
      }
      break;
    case 16:  // xbbctl set
      if (vbd_) {
        const std::string name = (in.u8() & 1) ? "notify_batch" : "max_list_segments";
        const std::string value = pick_value(in);
        vbd_call("set_tunable", [&] { vbd_->set_tunable(name, value); });
      }
      break;
    case 17:  // the disk is served again: a new domain, a new vbd
      if (vbd_) break;
      xs::with_transaction(toolstack_->xs(), [&](xs::TxId tx) {
        toolstack_->xs().rm(tx, kBackend);
        toolstack_->xs().rm(tx, kFrontend);
      });
      if (!hypervisor_.guest_alive) {
        toolstack_->create_domain(kGuest);
        hypervisor_.guest_alive = true;
      }
      add_disk();
      break;
    case 20:  // xbbctl pause
      if (vbd_) vbd_call("pause", [&] { vbd_->pause(answer_once("pause")); });
      break;
    case 21:  // xbbctl resume, on the same target, a new one, or one that cannot open
      if (vbd_) {
        const uint8_t which = in.u8() % 3;
        const std::string target = which == 0 ? "" : which == 1 ? "fuzz-moved-" + std::to_string(generation_) : "fail";
        vbd_call("resume", [&] { vbd_->resume(target, answer_once("resume")); });
      }
      break;
    case 22: {  // the image grows (or shrinks), then xbbctl resize or the size watcher notices
      uint64_t bytes = 0;
      {
        std::lock_guard lock(shared_->mu);
        bytes = shared_->ram_bytes = uint64_t(1 + in.u8() % 16) * 32 * 1024;
      }
      if (!vbd_) break;
      if (in.u8() & 1) {
        vbd_call("resize", [&] { vbd_->resize(answer_once("resize")); });
      } else {
        vbd_call("on_size_seen", [&] { vbd_->on_size_seen(bytes); });
      }
      break;
    }
    case 23:  // xbbd restarts: the old one lets the rings go, the new one adopts them
      if (!vbd_) break;
      vbd_call("quiesce_for_shutdown", [&] { vbd_->quiesce_for_shutdown(); });
      settle();
      drop_vbd();
      admin_touched_ = false;
      start_vbd();
      break;
    default: {  // the guest writes several nodes in one transaction
      const unsigned n = 1 + in.u8() % 4;
      std::vector<std::pair<std::string, std::string>> writes;
      for (unsigned i = 0; i < n; ++i) {
        std::string node = pick_node(in);
        writes.emplace_back(std::move(node), pick_value(in));
      }
      for (auto& [node, value] : writes) guest_write(node, value);
      break;
    }
  }
}

void Harness::check(const Before& before, unsigned op) {
  drain_violations();
  const auto be_state_text = dom0_->read(xs::kNoTransaction, kBackend + "/state");
  const bool backend_exists = dom0_->read(xs::kNoTransaction, kBackend).has_value();
  const bool frontend_exists = dom0_->read(xs::kNoTransaction, kFrontend).has_value();
  std::optional<XenbusState> be_state;
  if (be_state_text) {
    be_state = xs::parse_state(*be_state_text);
    CHECK(be_state && *be_state >= XenbusState::Initialising && *be_state <= XenbusState::Closed,
          "the backend state node holds '" + *be_state_text + "'");
  }
  const auto fe_state = model_state(model_);
  const bool online = xs::parse_bool(dom0_->read(xs::kNoTransaction, kBackend + "/online").value_or("0")).value_or(false);
  // As a backend must read it: no state or no readable one, Unknown,
  // Closed, or back to Initialising (a reset) means done with this connection.
  const bool frontend_done = !frontend_exists || !fe_state || *fe_state == XenbusState::Unknown ||
                             *fe_state == XenbusState::Initialising || *fe_state == XenbusState::Closed;
  const std::string op_name = " (after operation " + std::to_string(op) + ")";

  std::string phase = "gone";
  size_t queues = 0, order = 0;
  bool storage_ready = false;
  if (vbd_) {
    const auto d = describe();
    phase = d["phase"];
    queues = d["queues"];
    order = d["ring_page_order"];
    const std::string storage = d["storage"];
    storage_ready = storage != "opening" && storage.rfind("error:", 0) != 0;
  }
  {
    std::lock_guard lock(ledger_.mu);
    size_t pages = 0;
    for (auto& [address, n] : ledger_.mappings) pages += n;
    if (phase == "connected") {
      CHECK(ledger_.bound == queues && pages == queues << order,
            "a connected Vbd with " + std::to_string(queues) + " queues of order " + std::to_string(order) +
                " holds " + std::to_string(pages) + " mapped pages and " + std::to_string(ledger_.bound) +
                " bound ports" + op_name);
    } else {
      CHECK(pages == 0 && ledger_.bound == 0, "ring pages mapped or ports bound while " + phase + op_name);
    }
  }

  if (phase == "connected") {
    CHECK(be_state == XenbusState::Connected, "connected, but the backend state node says " +
                                                  be_state_text.value_or("nothing") + op_name);
    CHECK(fe_state != XenbusState::Closing && fe_state != XenbusState::Closed && fe_state != XenbusState::Unknown,
          "still connected to a frontend that is closing or closed" + op_name);
  }
  CHECK(!answered_twice_, "a pause, resume or resize was answered twice" + op_name);
  CHECK(awaited_ == 0, "a pause, resume or resize was never answered (the Vbd is " + phase + ")" + op_name);
  if (phase == "paused") {
    CHECK(be_state == XenbusState::Connected, "paused, but the state node says " + be_state_text.value_or("nothing") + op_name);
  }
  if (phase == "closing") CHECK(be_state == XenbusState::Closing, "closing, but the state node says " + be_state_text.value_or("nothing") + op_name);
  if (phase == "closed") CHECK(be_state == XenbusState::Closed, "closed, but the state node says " + be_state_text.value_or("nothing") + op_name);

  // A frontend that asked to connect is answered, one way or the other.
  if (phase == "init-wait" && storage_ready && online) {
    CHECK(fe_state != XenbusState::Initialised && fe_state != XenbusState::Connected,
          "the frontend is Initialised/Connected, the storage is open, and the backend stays in InitWait" + op_name);
  }
  if (before.had_vbd && before.phase == "init-wait" && vbd_ && (phase == "closing" || phase == "closed") &&
      !admin_touched_ && (fe_state == XenbusState::Initialised || fe_state == XenbusState::Connected)) {
    CHECK(dom0_->read(xs::kNoTransaction, kBackend + "/error").has_value(),
          "a refused frontend got Closing without an error node" + op_name);
  }
  if (map_calls_ > 0 && !hypervisor_refused_) {
    const auto expected = expect_rings(model_, config_.max_order, config_.max_queues);
    if (map_calls_ == expected.refs.size() && bind_calls_ == expected.refs.size() && online && !admin_touched_ &&
        (fe_state == XenbusState::Initialised || fe_state == XenbusState::Connected)) {
      CHECK(phase == "connected", "every ring mapped and bound, yet the Vbd is " + phase + op_name);
      CHECK(queues == expected.refs.size() && order == expected.order, "connected with the wrong geometry" + op_name);
    }
  }

  // Going away.
  if (!backend_exists) CHECK(!vbd_, "the backend directory is gone but the Vbd is still " + phase + op_name);
  if (!frontend_exists) CHECK(!vbd_, "the frontend directory is gone but the Vbd is still " + phase + op_name);
  if (backend_exists && !online && frontend_done) {
    CHECK(!vbd_, "the toolstack removed the disk and the frontend is done, but the Vbd is still " + phase + op_name);
  }
  if (before.had_vbd && !vbd_ && backend_exists && !admin_touched_ && (!frontend_exists || !online)) {
    CHECK(be_state == XenbusState::Closed, "released without answering Closed (state " +
                                               be_state_text.value_or("none") + ")" + op_name);
  }
}

void Harness::run(fuzz::Input& in) {
  for (unsigned n = 0; n < kMaxOps && !in.empty(); ++n) {
    Before before;
    if (vbd_) {
      const auto d = describe();
      before.had_vbd = true;
      before.phase = d["phase"];
    }
    // A stale error node must not pass for the answer to this operation.
    if (before.phase == "init-wait") toolstack_->xs().rm(xs::kNoTransaction, kBackend + "/error");
    map_calls_ = bind_calls_ = map_index_ = bind_index_ = 0;
    hypervisor_refused_ = false;
    unsigned op = 0;
    one_op(in, op);
    settle();
    if (trace_) {
      std::fprintf(stderr, "op %2u: %-10s -> %-10s backend state %s, frontend state %s, online %s\n", op,
                   before.had_vbd ? before.phase.c_str() : "gone",
                   vbd_ ? describe()["phase"].get<std::string>().c_str() : "gone",
                   dom0_->read(xs::kNoTransaction, kBackend + "/state").value_or("-").c_str(),
                   model_.count("state") ? xs::printable_excerpt(model_["state"]).c_str() : "-",
                   dom0_->read(xs::kNoTransaction, kBackend + "/online").value_or("-").c_str());
    }
    check(before, op);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Hostile frontends are the normal case here; their warnings would only slow us.
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  Config config;
  const uint8_t a = in.u8(), b = in.u8();
  config.max_queues = 1 + a % 4;
  config.max_order = (a >> 2) % 6;
  config.persistent = a & 0x40;
  config.fault_injection = a & 0x80;
  config.read_only = b & 1;
  config.cdrom = b & 2;
  config.map_fail_mask = (b & 4) ? in.u16() : 0;
  config.bind_fail_mask = (b & 8) ? in.u16() : 0;
  Harness harness(config);
  harness.run(in);
  return 0;
}
