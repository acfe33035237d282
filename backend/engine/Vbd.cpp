#include "backend/engine/Vbd.hpp"

#include <xen/io/blkif.h>

#include <algorithm>
#include <atomic>
#include <system_error>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "backend/engine/DescriptorBudget.hpp"
#include "backend/engine/DeviceDirectory.hpp"
#include "backend/engine/FaultSpec.hpp"
#include "backend/engine/FrontendRings.hpp"
#include "ring/protocol/Request.hpp"
#include "ring/protocol/RingGeometry.hpp"
#include "storage/snapshot/CowOriginRegistry.hpp"
#include "xenstore/Vdev.hpp"
#include "xenstore/WithTransaction.hpp"
#include "xenstore/XenstoreKeys.hpp"

namespace xbb::backend {

using xs::XenbusState;

namespace {

// Where a device keeps what an administrator set on it (see Vbd.hpp).
constexpr const char* kSettingsDir = "/xbbd";
// The most queues we accept from an adopted connection's advertisement.
constexpr unsigned kMaxAdoptedQueues = 256;

uint64_t next_instance() {
  static std::atomic<uint64_t> counter{0};
  return ++counter;
}

std::string describe_bytes(uint64_t bytes) { return std::to_string(bytes) + " bytes"; }

}  // namespace

Vbd::Vbd(VbdHost& host, xs::BackendPath path)
    : host_(host),
      path_(std::move(path)),
      key_(key_of(path_)),
      instance_(next_instance()),
      tunables_(host.options.tunables) {
  backend_ = path_.path;
  frontend_ = xs::expected_frontend_path(path_.frontend_domid, path_.devid, path_.type);
}

Vbd::~Vbd() {
  workers_.clear();
  if (origin_) storage::OriginRegistry::instance().remove(origin_name());
}

std::string Vbd::origin_name() const {
  return std::to_string(path_.frontend_domid) + "/" + xs::vdev_name(path_.devid);
}

void Vbd::report_hotplug_error(const std::string& message) {
  backend::report_hotplug_error(host_.xs, backend_, message);
}

std::string Vbd::key_of(const xs::BackendPath& path) {
  return std::to_string(path.frontend_domid) + "/" + std::to_string(path.devid);
}

const char* Vbd::phase_name() const {
  switch (phase_) {
    case Phase::New: return "new";
    case Phase::InitWait: return "init-wait";
    case Phase::Connected: return "connected";
    case Phase::Pausing: return "pausing";
    case Phase::Paused: return "paused";
    case Phase::Reopening: return "reopening";
    case Phase::Closing: return "closing";
    case Phase::Closed: return "closed";
    case Phase::Releasing: return "releasing";
    case Phase::Released: return "released";
  }
  return "?";
}

// Every write into the backend directory goes through here. A write creates
// missing parents, so one that comes after the toolstack removed the device
// would re-create its directory with dom0-only permissions; when the toolstack
// then creates the device anew, it finds those nodes, and the guest cannot
// read its backend's state (found by fuzz_control: a disk re-created at once
// was never connected).
void Vbd::write_own_directory(const std::function<void(xs::TxId)>& writes) {
  xs::with_transaction(host_.xs, [&](xs::TxId tx) {
    if (host_.xs.directory(tx, backend_)) writes(tx);
  });
}

void Vbd::set_state(XenbusState state) {
  try {
    write_own_directory([&](xs::TxId tx) { xs::write_state(host_.xs, tx, backend_, state); });
  } catch (const std::exception& e) {
    spdlog::warn("{}: cannot write state {}: {}", key_, xs::to_string(state), e.what());
  }
}

bool Vbd::online() const {
  return xs::read_bool(host_.xs, xs::kNoTransaction, backend_ + "/online").value_or(false);
}

std::optional<XenbusState> Vbd::frontend_state() const {
  return xs::read_state(host_.xs, xs::kNoTransaction, frontend_);
}

bool Vbd::guest_log() { return log_limiter_.allow(); }

std::string Vbd::suppressed_note() {
  const uint64_t n = log_limiter_.take_suppressed();
  return n == 0 ? std::string() : " (" + std::to_string(n) + " similar lines about this device left out)";
}

void Vbd::remember(const std::string& node, const std::string& value) {
  try {
    // Only into the directory as it is: a write creates missing parents, and
    // a setting that comes after the toolstack removed the device would
    // re-create a stub of its directory that nobody ever removes.
    write_own_directory([&](xs::TxId tx) { host_.xs.write(tx, backend_ + kSettingsDir + "/" + node, value); });
  } catch (const std::exception& e) {
    spdlog::warn("{}: cannot record {} = {} for a restart: {}", key_, node, value, e.what());
  }
}

void Vbd::forget(const std::string& node) {
  try {
    host_.xs.rm(xs::kNoTransaction, backend_ + kSettingsDir + "/" + node);
  } catch (const std::exception& e) {
    spdlog::warn("{}: cannot clear {}: {}", key_, node, e.what());
  }
}

// Tunables and the paused flag come back here; fault injection once the
// storage stack exists (install_storage).
void Vbd::restore_remembered_settings() {
  auto& xs = host_.xs;
  const std::string dir = backend_ + kSettingsDir;
  if (auto names = xs.directory(xs::kNoTransaction, dir + "/tunables")) {
    for (const auto& name : *names) {
      const auto value = xs.read(xs::kNoTransaction, dir + "/tunables/" + name);
      if (!value) continue;
      if (auto error = tunables_.set(name, *value)) {
        spdlog::warn("{}: ignoring the recorded tunable {}: {}", key_, name, *error);
      } else {
        spdlog::info("{}: tunable {} = {} (set on this device before the restart)", key_, name, *value);
      }
    }
  }
  if (xs.read(xs::kNoTransaction, dir + "/paused").value_or("") == "1") {
    if (adopted_) {
      start_paused_ = true;
      spdlog::info("{}: the device was paused before the restart; it stays paused until `xbbctl resume`", key_);
    } else {
      // The frontend is connecting anew: there is no live ring to hold.
      forget("paused");
    }
  }
}

// Refuses devices whose nodes do not say what the toolstack writes: the
// frontend must be this domain's own vbd directory and the backend
// directory must not be writable by the guest (DESIGN.md §5).
bool Vbd::start() {
  auto& xs = host_.xs;
  const auto verdict = vet_backend_directory(xs, path_);
  if (verdict.kind == DirectoryVerdict::Kind::Incomplete) {
    spdlog::debug("{}: backend directory not complete yet", key_);
    return false;
  }
  if (verdict.kind == DirectoryVerdict::Kind::Refused) {
    spdlog::error("{}: refusing to serve {}: {}", key_, backend_, verdict.reason);
    report_hotplug_error("xbbd: " + verdict.reason);
    phase_ = Phase::Released;
    return false;
  }

  target_ = xs.read(xs::kNoTransaction, backend_ + "/params").value_or("");
  const std::string mode = xs.read(xs::kNoTransaction, backend_ + "/mode").value_or("w");
  read_only_ = mode.empty() || mode[0] != 'w';
  cdrom_ = xs.read(xs::kNoTransaction, backend_ + "/device-type").value_or("disk") == "cdrom";
  if (cdrom_) read_only_ = true;
  discard_enabled_ = xs::read_bool(xs, xs::kNoTransaction, backend_ + "/discard-enable").value_or(true);

  // A connection another xbbd made (a restart, an upgrade, a crash) is
  // adopted as it is: the frontend negotiated within what that xbbd
  // advertised, so those stay the limits and are not rewritten.
  const auto state = xs::read_state(xs, xs::kNoTransaction, backend_);
  adopted_ = state && (*state == XenbusState::Connected) && frontend_state() == std::optional(XenbusState::Connected);
  if (adopted_) {
    limits_ = adopted_limits();
  } else {
    limits_ = {host_.options.max_ring_page_order, host_.options.max_queues, host_.options.max_indirect_segments};
    publish_features();
    set_state(XenbusState::InitWait);
  }
  phase_ = Phase::InitWait;
  restore_remembered_settings();
  spdlog::info("{}: serving {} for domain {} ({}{})", key_, target_.empty() ? "(no target)" : target_,
               path_.frontend_domid, read_only_ ? "read-only" : "read-write", adopted_ ? ", adopting a live connection" : "");
  if (target_.empty()) {
    storage_error_ = "the backend has no 'params' (the storage target)";
    spdlog::error("{}: {}", key_, storage_error_);
    report_hotplug_error(storage_error_);
  } else if (!open_storage_async(target_, host_.options.claim_targets, OpenPurpose::Serve)) {
    report_hotplug_error(storage_error_);
  }
  return true;
}

Vbd::Limits Vbd::adopted_limits() const {
  auto& xs = host_.xs;
  Limits limits;
  limits.max_ring_page_order = static_cast<unsigned>(
      xs::read_uint(xs, xs::kNoTransaction, backend_ + "/max-ring-page-order", ring::kMaxRingPageOrder)
          .value_or(host_.options.max_ring_page_order));
  limits.max_queues = static_cast<unsigned>(std::max<uint64_t>(
      1, xs::read_uint(xs, xs::kNoTransaction, backend_ + "/multi-queue-max-queues", kMaxAdoptedQueues)
             .value_or(host_.options.max_queues)));
  limits.max_indirect_segments = static_cast<unsigned>(
      xs::read_uint(xs, xs::kNoTransaction, backend_ + "/feature-max-indirect-segments", ring::kMaxSegments)
          .value_or(host_.options.max_indirect_segments));
  return limits;
}

void Vbd::publish_features() {
  write_own_directory([&](xs::TxId tx) {
    host_.xs.write(tx, backend_ + "/feature-max-indirect-segments", std::to_string(limits_.max_indirect_segments));
    host_.xs.write(tx, backend_ + "/multi-queue-max-queues", std::to_string(limits_.max_queues));
    host_.xs.write(tx, backend_ + "/max-ring-page-order", std::to_string(limits_.max_ring_page_order));
  });
}

// Xen's `block` script lets a writable image be shared by two domains of the
// same VM (the same /vm path): that is a local migration, where the incoming
// domain's disk is set up while the outgoing one still has it.
bool Vbd::shares_image_with_same_vm(const std::string& target) const {
  auto& xs = host_.xs;
  auto vm_of = [&](const std::string& domid) {
    return xs.read(xs::kNoTransaction, "/local/domain/" + domid + "/vm").value_or("");
  };
  const std::string vm = vm_of(std::to_string(path_.frontend_domid));
  if (vm.empty()) return false;
  const std::string base = backend_.substr(0, backend_.rfind('/', backend_.rfind('/') - 1));
  const auto domains = xs.directory(xs::kNoTransaction, base);
  if (!domains) return false;
  for (const auto& domid : *domains) {
    if (domid == std::to_string(path_.frontend_domid)) continue;
    const auto devices = xs.directory(xs::kNoTransaction, base + "/" + domid);
    if (!devices) continue;
    for (const auto& devid : *devices) {
      if (xs.read(xs::kNoTransaction, base + "/" + domid + "/" + devid + "/params").value_or("") != target) continue;
      if (vm_of(domid) == vm) return true;
    }
  }
  return false;
}

// Opening (an NBD connect, a snapshot store's map) may take a while, or hang
// on a dead server: never on the control thread, and the thread is not
// joined, so removing a device whose open hangs costs the control thread
// nothing. Its result reaches this Vbd only if the Vbd still exists.
bool Vbd::open_storage_async(const std::string& target, bool claim, OpenPurpose purpose) {
  auto open = host_.open_storage;
  auto post = host_.post;
  const uint64_t instance = instance_;
  const bool ro = read_only_, faults = host_.options.fault_injection;
  const bool may_share = claim && !ro && shares_image_with_same_vm(target);
  SnapshotCatalog catalog = host_.snapshots ? *host_.snapshots : SnapshotCatalog("");
  const std::string key = key_;
  try {
    std::thread([open, post, instance, key, target, ro, faults, claim, may_share, catalog, purpose] {
      auto opened = std::make_shared<Opened>();
      try {
        auto storage = open(target, ro);
        if (claim) {
          try {
            opened->claim = storage->claim(!ro && !storage->properties().read_only);
          } catch (const storage::StorageInUse& e) {
            if (!may_share) throw;
            spdlog::warn("{}: {}; sharing it with a domain of the same VM (a local migration)", key, e.what());
          }
        }
        // A RAM disk starts empty: stores taken of an earlier one are not its.
        const auto stores = storage->same_data_for_every_open() ? catalog.stores_of(storage->describe())
                                                                : std::vector<std::string>{};
        opened->stack = std::make_shared<StorageStack>(
            build_storage_stack(std::move(storage), faults, stores, purpose == OpenPurpose::Resize));
      } catch (const std::exception& e) {
        opened->error = e.what();
      }
      post(instance, [opened, purpose](Vbd& vbd) { vbd.on_storage_opened(opened, purpose); });
    }).detach();
  } catch (const std::system_error& e) {
    storage_error_ = std::string("cannot start a thread to open the storage: ") + e.what();
    spdlog::error("{}: {}", key_, storage_error_);
    return false;
  }
  storage_opening_ = true;
  reopen_target_ = target;
  return true;
}

void Vbd::install_storage(Opened& opened) {
  auto& stack = *opened.stack;
  for (const auto& failure : stack.attach_errors) spdlog::error("{}: snapshot not re-attached: {}", key_, failure);
  if (!read_only_ && stack.top->properties().read_only) read_only_ = true;
  if (origin_) storage::OriginRegistry::instance().remove(origin_name());
  storage_ = stack.top;
  origin_ = stack.origin;
  fault_ = stack.fault;
  if (opened.claim) claim_ = std::move(opened.claim);
  storage::OriginRegistry::instance().add(origin_name(), origin_);
  storage_error_.clear();
  if (fault_) {
    if (auto spec = host_.xs.read(xs::kNoTransaction, backend_ + kSettingsDir + "/fault")) {
      if (auto error = set_fault(*spec)) spdlog::warn("{}: ignoring the recorded fault injection: {}", key_, *error);
    }
  }
}

void Vbd::on_storage_opened(std::shared_ptr<Opened> opened, OpenPurpose purpose) {
  storage_opening_ = false;
  if (purpose == OpenPurpose::Serve) {
    if (phase_ != Phase::InitWait) return;  // closed or released meanwhile: the result is dropped
    if (!opened->stack) {
      storage_error_ = opened->error.empty() ? "cannot open the storage" : opened->error;
      spdlog::error("{}: {}", key_, storage_error_);
      report_hotplug_error(storage_error_);
      return;
    }
    install_storage(*opened);
    try {
      write_own_directory([&](xs::TxId tx) { host_.xs.write(tx, backend_ + "/hotplug-status", "connected"); });
    } catch (const std::exception& e) {
      spdlog::warn("{}: writing hotplug status: {}", key_, e.what());
    }
    if (start_paused_) {
      start_paused_ = false;
      phase_ = Phase::Paused;
      return;
    }
    on_frontend_changed();
    return;
  }

  // A reopen for resume() or resize(); the device is paused meanwhile.
  if (phase_ != Phase::Reopening) return;  // it closed meanwhile and the waiters were answered
  phase_ = Phase::Paused;
  const bool new_target = purpose == OpenPurpose::Resume;
  std::optional<std::string> error;
  if (!opened->stack) {
    error = "cannot open " + reopen_target_ + ": " + opened->error;
  } else {
    const uint64_t now = storage_->properties().size_bytes;
    const uint64_t next = opened->stack->top->properties().size_bytes;
    if (next < now) {
      error = (new_target ? reopen_target_ + " is smaller than the disk (" : "the target shrank (") +
              describe_bytes(next) + " < " + describe_bytes(now) +
              "); a connected disk never shrinks: the guest would lose what lies past the new end";
    } else if (opened->stack->top->properties().read_only && !read_only_) {
      error = reopen_target_ + " opened read-only, but the disk is writable";
    }
  }
  if (error) {
    spdlog::error("{}: {}", key_, *error);
    if (purpose == OpenPurpose::Resize) {
      resume_workers(error);  // carries on with the storage it had
    } else {
      answer_waiters(resume_waiters_, error);  // stays paused on the old target
    }
    return;
  }
  const uint64_t before = storage_->properties().size_bytes;
  install_storage(*opened);
  if (new_target) {
    spdlog::info("{}: now served from {} (was {})", key_, reopen_target_, target_);
    target_ = reopen_target_;
    try {
      // What the next xbbd reads: the disk now lives there.
      write_own_directory([&](xs::TxId tx) { host_.xs.write(tx, backend_ + "/params", target_); });
    } catch (const std::exception& e) {
      spdlog::error("{}: cannot record the new target in params ({}); a restarted xbbd would serve the old one",
                    key_, e.what());
    }
  }
  const uint64_t after = storage_->properties().size_bytes;
  if (after != before) spdlog::info("{}: size {} -> {} bytes", key_, before, after);
  resume_workers(std::nullopt);
}

void Vbd::on_backend_changed() {
  if (phase_ == Phase::Released || phase_ == Phase::New) return;
  if (!host_.xs.directory(xs::kNoTransaction, backend_)) {
    spdlog::info("{}: backend directory removed", key_);
    release();
    return;
  }
  if (!online() && !release_when_closed_) {
    // The toolstack asks us to go away (xl block-detach, domain shutdown).
    release_when_closed_ = true;
    if (phase_ == Phase::InitWait || phase_ == Phase::Closed) {
      set_state(XenbusState::Closed);
      release();
      return;
    }
    if (phase_ == Phase::Connected || phase_ == Phase::Pausing || phase_ == Phase::Paused ||
        phase_ == Phase::Reopening) {
      begin_closing();
    }
  }
  // The toolstack may have written our state node (libxl writes Closing on
  // removal); re-assert the state we are in.
  const auto state = xs::read_state(host_.xs, xs::kNoTransaction, backend_);
  if (phase_ == Phase::Closing && state != XenbusState::Closing) set_state(XenbusState::Closing);
  maybe_finish_closing();
}

bool Vbd::on_frontend_changed() {
  if (phase_ == Phase::Released || phase_ == Phase::Releasing || phase_ == Phase::New) return true;
  ++frontend_changes_;
  const auto state = frontend_state();
  const bool changed = state != last_frontend_state_;
  last_frontend_state_ = state;
  if (!state) {
    if (!host_.xs.directory(xs::kNoTransaction, frontend_)) {
      spdlog::info("{}: frontend {} vanished", key_, frontend_);
      // libxl removes the frontend and then waits for state 6: answer it
      // once the I/O in flight has drained, or it waits out its timeout.
      closed_on_release_ = true;
      release();
    } else if (phase_ == Phase::Closing) {
      // No readable state (removed, or garbage): done, as maybe_finish_closing
      // counts it, whether or not a worker is left to report in.
      maybe_finish_closing();
    }
    return changed;
  }
  switch (*state) {
    case XenbusState::Initialising:
      if (phase_ == Phase::Closed && !release_when_closed_) {
        if (guest_log()) spdlog::info("{}: frontend reinitialising; waiting for it again{}", key_, suppressed_note());
        set_state(XenbusState::InitWait);
        phase_ = Phase::InitWait;
      } else if (phase_ == Phase::Closing) {
        // Reset while we close, without Closed in between: it is done with
        // the old connection (maybe_finish_closing counts Initialising as
        // done), so finish closing now rather than only at a worker's last
        // event, which may already have passed.
        maybe_finish_closing();
      }
      break;
    case XenbusState::Initialised:
    case XenbusState::Connected:
      if (phase_ == Phase::InitWait && storage_) connect();
      break;
    case XenbusState::Closing:
    case XenbusState::Closed:
    case XenbusState::Unknown:
      if (phase_ == Phase::Connected || phase_ == Phase::InitWait || phase_ == Phase::Pausing ||
          phase_ == Phase::Paused || phase_ == Phase::Reopening) {
        begin_closing();
      }
      maybe_finish_closing();
      break;
    default:
      break;
  }
  return changed;
}

void Vbd::begin_closing() {
  // A pause holds one connection's requests: closing that connection ends
  // it, recorded for a restart or still to be applied after an adoption.
  const bool paused = start_paused_ || phase_ == Phase::Pausing || phase_ == Phase::Paused ||
                      phase_ == Phase::Reopening;
  start_paused_ = false;
  stop_workers();
  set_state(XenbusState::Closing);
  phase_ = Phase::Closing;
  resume_after_pause_ = false;
  if (paused) forget("paused");
  const std::optional<std::string> closing = "the device is closing";
  answer_waiters(pause_waiters_, closing);
  answer_waiters(resume_waiters_, closing);
}

void Vbd::connect() {
  std::string error;
  bool connected = false;
  try {
    connected = connect_queues(error);
    if (connected) publish_connected();
  } catch (const std::exception& e) {
    // Out of descriptors, memory or threads, or xenstore refused: this disk
    // fails, the daemon and every other disk carry on.
    error = std::string("connecting: ") + e.what();
    connected = false;
  }
  if (!connected) {
    workers_.clear();
    fail(error);
    return;
  }
  phase_ = Phase::Connected;
  try {
    for (auto& worker : workers_) worker->start();
  } catch (const std::exception& e) {
    fail(std::string("starting the queue workers: ") + e.what());
    return;
  }
  if (guest_log()) {
    spdlog::info("{}: connected: {} queue(s), ring order {}, {}, {} grants{}", key_, workers_.size(), ring_page_order_,
                 abi_name_, persistent_ ? "persistent" : "copied", suppressed_note());
  }
}

bool Vbd::connect_queues(std::string& error) {
  FrontendLimits limits{limits_.max_ring_page_order, limits_.max_queues};
  auto parsed = read_frontend_rings(host_.xs, frontend_, limits);
  if (auto* message = std::get_if<std::string>(&parsed)) {
    error = *message;
    return false;
  }
  const auto& rings = std::get<FrontendRings>(parsed);
  if (auto short_of = check_descriptor_budget(static_cast<unsigned>(rings.queues.size()))) {
    error = *short_of;
    return false;
  }
  persistent_ = host_.options.persistent_grants && rings.wants_persistent;
  ring_page_order_ = rings.ring_page_order;
  abi_name_ = std::string(ring::to_string(rings.abi));
  const auto& props = storage_->properties();

  ring::DiskGeometry geometry{};
  geometry.sectors = props.size_bytes / 512;
  geometry.logical_block_size = props.logical_block_size;
  geometry.read_only = read_only_;
  geometry.max_indirect_segments = static_cast<uint16_t>(limits_.max_indirect_segments);
  geometry.flush_supported = true;
  geometry.barrier_supported = true;
  geometry.discard_supported = discard_enabled_ && props.can_discard && !read_only_;
  geometry.secure_discard_supported = geometry.discard_supported && props.can_secure_discard;

  const auto entries = ring::ring_entries(rings.abi, 1u << rings.ring_page_order);
  std::vector<std::unique_ptr<QueueWorker>> workers;
  for (unsigned q = 0; q < rings.queues.size(); ++q) {
    const auto& queue = rings.queues[q];
    QueueSetup setup;
    setup.index = q;
    setup.name = key_ + "/q" + std::to_string(q);
    setup.frontend = path_.frontend_domid;
    setup.grants = host_.hypervisor.open_grant_table();
    setup.events = host_.hypervisor.open_event_channel();
    if (!setup.grants || !setup.events) {
      error = "cannot open the grant table or event channel device";
      return false;
    }
    setup.ring_address = setup.grants->map(path_.frontend_domid, queue.ring_refs, /*writable=*/true);
    if (setup.ring_address == nullptr) {
      error = "cannot map the ring pages of queue " + std::to_string(q);
      return false;
    }
    setup.ring_pages = queue.ring_refs.size();
    auto port = setup.events->bind_interdomain(path_.frontend_domid, queue.event_channel);
    if (!port) {
      setup.grants->unmap(setup.ring_address, setup.ring_pages);
      error = "cannot bind event channel " + std::to_string(queue.event_channel) + " of queue " + std::to_string(q);
      return false;
    }
    setup.port = *port;
    setup.abi = rings.abi;
    setup.storage = storage_->open_queue(entries + 1);
    setup.storage_properties = &storage_->properties();
    setup.geometry = geometry;
    setup.persistent_grants = persistent_;
    setup.persistent_grant_capacity = host_.options.persistent_grants_per_queue;
    setup.bounce_pages = host_.options.bounce_pages_per_queue;
    setup.tunables = tunables_;
    auto post = host_.post;
    const uint64_t instance = instance_;
    setup.notify_control = [post, instance](unsigned index, QueueEvent event) {
      post(instance, [index, event](Vbd& vbd) { vbd.on_queue_event(index, event); });
    };
    workers.push_back(std::make_unique<QueueWorker>(std::move(setup)));
  }
  workers_ = std::move(workers);
  return true;
}

void Vbd::publish_connected() {
  const auto& props = storage_->properties();
  const bool discard = discard_enabled_ && props.can_discard && !read_only_;
  unsigned info = 0;
  if (cdrom_) info |= VDISK_CDROM;
  if (read_only_) info |= VDISK_READONLY;
  auto& xs = host_.xs;
  // Also how a new size is announced: blkfront re-reads `sectors` when the
  // state node is written again (Linux blkback's resize does the same).
  write_own_directory([&](xs::TxId tx) {
    xs.write(tx, backend_ + "/sectors", std::to_string(props.size_bytes / 512));
    xs.write(tx, backend_ + "/info", std::to_string(info));
    xs.write(tx, backend_ + "/sector-size", std::to_string(props.logical_block_size));
    xs.write(tx, backend_ + "/physical-sector-size", std::to_string(props.physical_block_size));
    xs.write(tx, backend_ + "/feature-flush-cache", props.can_flush ? "1" : "0");
    xs.write(tx, backend_ + "/feature-barrier", "1");
    xs.write(tx, backend_ + "/feature-persistent", host_.options.persistent_grants ? "1" : "0");
    xs.write(tx, backend_ + "/feature-discard", discard ? "1" : "0");
    if (discard) {
      xs.write(tx, backend_ + "/discard-granularity", std::to_string(std::max<uint32_t>(props.discard_granularity, 512)));
      xs.write(tx, backend_ + "/discard-alignment", std::to_string(props.discard_alignment));
      xs.write(tx, backend_ + "/discard-secure", props.can_secure_discard ? "1" : "0");
    }
    xs::write_state(xs, tx, backend_, XenbusState::Connected);
  });
}

void Vbd::fail(const std::string& message) {
  if (guest_log()) spdlog::error("{}: {}{}", key_, message, suppressed_note());
  try {
    write_own_directory([&](xs::TxId tx) { host_.xs.write(tx, backend_ + "/error", message); });
  } catch (const std::exception&) {
  }
  begin_closing();
  maybe_finish_closing();
}

void Vbd::stop_workers() {
  for (auto& worker : workers_) worker->request_stop();
}

void Vbd::on_queue_event(unsigned queue, QueueEvent event) {
  switch (event) {
    case QueueEvent::Stopped:
      break;
    case QueueEvent::StorageGone:
      if (phase_ == Phase::Connected) fail("the storage " + target_ + " is gone");
      return;
    case QueueEvent::RingHalted:
      if (phase_ == Phase::Connected) fail("queue " + std::to_string(queue) + " halted: the frontend broke the ring protocol");
      return;
    case QueueEvent::Failed:
      if (phase_ == Phase::Connected) {
        const std::string why = queue < workers_.size() ? workers_[queue]->failure() : std::string("unknown");
        fail("queue " + std::to_string(queue) + " failed: " + why);
        return;
      }
      break;
  }
  maybe_finish_closing();
}

void Vbd::answer_waiters(std::vector<Done>& waiters, const std::optional<std::string>& error) {
  auto batch = std::move(waiters);
  waiters.clear();
  for (auto& done : batch) done(error);
}

// Called whenever something that closing, releasing or pausing waits for may
// have happened.
void Vbd::maybe_finish_closing() {
  // Workers stop on their own only when they fail; their event says why, so
  // a connected disk keeps them until then.
  if (phase_ == Phase::Connected) return;
  for (auto& worker : workers_) {
    if (!worker->stopped()) return;
  }
  for (auto& worker : workers_) retired_stats_ += worker->stats().snapshot();
  workers_.clear();  // joins (already stopped), unbinds and unmaps

  if (phase_ == Phase::Releasing) {
    if (closed_on_release_ && host_.xs.directory(xs::kNoTransaction, backend_)) set_state(XenbusState::Closed);
    phase_ = Phase::Released;
    spdlog::info("{}: released", key_);
    return;
  }
  if (phase_ == Phase::Pausing) {
    finish_pause();
    return;
  }
  if (phase_ != Phase::Closing) return;
  const auto state = frontend_state();
  const bool frontend_done = !state || *state == XenbusState::Closed || *state == XenbusState::Unknown ||
                             *state == XenbusState::Initialising;
  if (!frontend_done) return;
  // Read `online` before writing Closed: libxl writes online=0 together with
  // state=5 and waits for 6. Reading it afterwards could see a removal that
  // overwrote our Closed with 5 and release without ever answering it; read
  // first, a later removal is answered by on_backend_changed() in Closed.
  const bool release_now = release_when_closed_ || !online();
  set_state(XenbusState::Closed);
  phase_ = Phase::Closed;
  if (guest_log()) spdlog::info("{}: closed{}", key_, suppressed_note());
  if (release_now) {
    release();
  } else if (state == XenbusState::Initialising) {
    on_frontend_changed();
  }
}

void Vbd::on_domain_gone() {
  spdlog::info("{}: domain {} is gone", key_, path_.frontend_domid);
  if (host_.xs.directory(xs::kNoTransaction, backend_)) set_state(XenbusState::Closed);
  release();
}

void Vbd::detach() {
  release_when_closed_ = true;
  if (phase_ == Phase::Connected || phase_ == Phase::Pausing || phase_ == Phase::Paused ||
      phase_ == Phase::Reopening) {
    begin_closing();
    maybe_finish_closing();
  } else if (phase_ != Phase::Closing) {
    release();
  }
}

// Not a close: the guest's blkfront takes a backend Closing as the disk gone
// for good (Linux 6.x marks it dead). Stop consuming, answer what is in
// flight, unmap, and leave every xenstore node as it is; requests the guest
// queues meanwhile wait in its ring for the next xbbd, which adopts it.
void Vbd::quiesce_for_shutdown() {
  const std::optional<std::string> stopping = "xbbd is stopping";
  answer_waiters(pause_waiters_, stopping);
  answer_waiters(resume_waiters_, stopping);
  resume_after_pause_ = false;
  release();
}

void Vbd::release() {
  if (phase_ == Phase::Released) return;
  phase_ = Phase::Releasing;
  const std::optional<std::string> released = "the device was released";
  answer_waiters(pause_waiters_, released);
  answer_waiters(resume_waiters_, released);
  stop_workers();
  maybe_finish_closing();
}

void Vbd::pause(Done done) {
  switch (phase_) {
    case Phase::Connected:
      pause_waiters_.push_back(std::move(done));
      phase_ = Phase::Pausing;
      remember("paused", "1");
      spdlog::info("{}: pausing: draining {} queue(s)", key_, workers_.size());
      stop_workers();
      maybe_finish_closing();
      return;
    case Phase::Pausing:
      if (resume_after_pause_) break;  // a resize is under way
      pause_waiters_.push_back(std::move(done));
      return;
    case Phase::Paused:
      done(std::nullopt);
      return;
    default:
      break;
  }
  done(key_ + " cannot be paused while it is " + phase_name() + " (only a connected disk can)");
}

void Vbd::finish_pause() {
  phase_ = Phase::Paused;
  if (resume_after_pause_) {
    // A resize: reopen the target (keeping the claim on it) and resume.
    resume_after_pause_ = false;
    phase_ = Phase::Reopening;
    if (!open_storage_async(target_, /*claim=*/false, OpenPurpose::Resize)) {
      phase_ = Phase::Paused;
      resume_workers(storage_error_);
    }
    return;
  }
  spdlog::info("{}: paused; the guest's requests wait in its ring", key_);
  answer_waiters(pause_waiters_, std::nullopt);
}

void Vbd::resume(const std::string& new_target, Done done) {
  if (phase_ != Phase::Paused) {
    done(key_ + " is " + phase_name() + ", not paused" +
         (phase_ == Phase::Pausing ? " yet (the pause is still draining)" : ""));
    return;
  }
  if (new_target.empty() || new_target == target_) {
    resume_waiters_.push_back(std::move(done));
    resume_workers(std::nullopt);
    return;
  }
  if (origin_ && !origin_->snapshots().empty()) {
    done(key_ + " has snapshots; delete them before moving it to another target (xbbctl snapshot list)");
    return;
  }
  resume_waiters_.push_back(std::move(done));
  phase_ = Phase::Reopening;
  if (!open_storage_async(new_target, host_.options.claim_targets, OpenPurpose::Resume)) {
    phase_ = Phase::Paused;
    answer_waiters(resume_waiters_, storage_error_);
  }
}

// Maps the rings again and announces the disk (with its size) as Connected.
// `error` is what the waiters hear even when the resume itself succeeds (a
// refused resize resumes on the old storage).
void Vbd::resume_workers(std::optional<std::string> error) {
  // The guest may have started over meanwhile (kexec, a driver reload): its
  // old ring refs are then its to reuse for anything, and it has not asked to
  // connect. Close the old connection instead; one starting over then finds
  // InitWait, as after any close.
  const auto state = frontend_state();
  if (state != XenbusState::Initialised && state != XenbusState::Connected) {
    const std::string why = "the frontend is no longer connected (state " +
                            (state ? xs::to_string(*state) : std::string("unreadable")) + "); closing instead";
    spdlog::warn("{}: not resuming: {}", key_, why);
    answer_waiters(resume_waiters_, why);
    begin_closing();
    maybe_finish_closing();
    return;
  }
  connect();
  if (phase_ != Phase::Connected) {
    answer_waiters(resume_waiters_, error ? error : std::optional<std::string>("the device could not be connected again"));
    return;
  }
  forget("paused");
  spdlog::info("{}: resumed", key_);
  answer_waiters(resume_waiters_, error);
}

void Vbd::resize(Done done) {
  if (phase_ != Phase::Connected) {
    done(key_ + " is " + phase_name() + "; only a connected disk is resized (resume it first)");
    return;
  }
  if (origin_ && !origin_->snapshots().empty()) {
    done(key_ + " has snapshots, which record the disk's size; delete them before resizing (xbbctl snapshot list)");
    return;
  }
  resume_waiters_.push_back(std::move(done));
  resume_after_pause_ = true;
  phase_ = Phase::Pausing;
  spdlog::info("{}: resizing: draining {} queue(s) to reopen {}", key_, workers_.size(), target_);
  stop_workers();
  maybe_finish_closing();
}

void Vbd::on_size_seen(uint64_t bytes) {
  if (phase_ != Phase::Connected || !storage_) return;
  const uint64_t now = storage_->properties().size_bytes;
  if (bytes == now) return;
  if (bytes < now) {
    spdlog::warn("{}: {} shrank to {} bytes while connected; the guest keeps its {} bytes until it is detached",
                 key_, target_, bytes, now);
    return;
  }
  spdlog::info("{}: {} grew from {} to {} bytes; announcing it to the guest", key_, target_, now, bytes);
  resize([key = key_](std::optional<std::string> error) {
    if (error) spdlog::error("{}: online resize failed: {}", key, *error);
  });
}

std::optional<std::string> Vbd::set_tunable(const std::string& name, const std::string& value) {
  Tunables next = tunables_;
  if (auto error = next.set(name, value)) return error;
  tunables_ = next;
  for (auto& worker : workers_) worker->set_tunables(tunables_);
  remember("tunables/" + name, value);
  return std::nullopt;
}

void Vbd::reset_tunables(const Tunables& tunables) {
  tunables_ = tunables;
  for (auto& worker : workers_) worker->set_tunables(tunables_);
  forget("tunables");
}

StatsSnapshot Vbd::stats() const {
  StatsSnapshot total = retired_stats_;
  for (auto& worker : workers_) total += worker->stats().snapshot();
  return total;
}

std::vector<StatsSnapshot> Vbd::queue_stats() const {
  std::vector<StatsSnapshot> out;
  for (auto& worker : workers_) out.push_back(worker->stats().snapshot());
  return out;
}

size_t Vbd::mapped_grant_pages() const {
  size_t pages = 0;
  for (auto& worker : workers_) pages += worker->mapped_pages();
  return pages;
}

void Vbd::describe(nlohmann::json& out) const {
  out = {{"device", key_},
         {"domid", path_.frontend_domid},
         {"devid", path_.devid},
         {"vdev", xs::vdev_name(path_.devid)},
         {"backend", backend_},
         {"target", target_},
         {"storage", storage_ ? storage_->describe() : (storage_error_.empty() ? "opening" : "error: " + storage_error_)},
         {"phase", phase_name()},
         {"read_only", read_only_},
         {"queues", workers_.size()},
         {"ring_page_order", ring_page_order_},
         {"protocol", abi_name_},
         {"persistent_grants", persistent_},
         {"mapped_grant_pages", mapped_grant_pages()},
         {"frontend_changes", frontend_changes_},
         {"frontend_floods", frontend_floods_}};
  if (storage_) out["size_bytes"] = storage_->properties().size_bytes;
  if (origin_) out["snapshots"] = origin_->snapshots().size();
  if (fault_) out["fault"] = to_string(fault_->settings());
  nlohmann::json tun = nlohmann::json::object();
  for (auto& [name, value] : tunables_.list()) tun[name] = value;
  out["tunables"] = tun;
}

// Runs `work` on a helper thread; what it returns is handed to `then` on the
// control thread. A host out of threads answers at once.
static void off_the_control_thread(const VbdHost& host, std::function<nlohmann::json()> work,
                                   std::function<void(nlohmann::json)> then) {
  auto post = host.post_control;
  try {
    std::thread([work = std::move(work), then, post] {
      nlohmann::json result = work();
      post([then, result = std::move(result)] { then(result); });
    }).detach();
  } catch (const std::system_error& e) {
    then({{"ok", false}, {"error", std::string("cannot start a thread for it: ") + e.what()}});
  }
}

void Vbd::snapshot_create(const std::string& store, uint32_t cluster_size, Answer answer) {
  if (!origin_) return answer({{"ok", false}, {"error", "the storage of " + key_ + " is not open"}});
  if (store.empty() || store[0] != '/')
    return answer({{"ok", false}, {"error", "the snapshot store must be an absolute path"}});
  auto origin = origin_;
  SnapshotCatalog* catalog = host_.snapshots;
  const std::string key = key_;
  off_the_control_thread(
      host_,
      [origin, store, cluster_size]() -> nlohmann::json {
        try {
          auto snapshot = origin->create_snapshot(store, cluster_size);
          return {{"ok", true},
                  {"snapshot", {{"id", snapshot->id()}, {"store", snapshot->store_path()},
                                {"cluster_size", snapshot->cluster_size()}}}};
        } catch (const std::exception& e) {
          return {{"ok", false}, {"error", e.what()}};
        }
      },
      [answer, catalog, origin, key](nlohmann::json result) {
        if (result.value("ok", false)) {
          const std::string id = result["snapshot"]["id"], path = result["snapshot"]["store"];
          if (catalog && origin->same_data_for_every_open()) {
            if (auto error = catalog->add(origin->describe(), path)) {
              spdlog::error("{}: snapshot {} taken but not recorded, so it will not survive a restart: {}", key, id,
                            *error);
            }
          }
          spdlog::info("{}: snapshot {} taken into {}", key, id, path);
        }
        answer(std::move(result));
      });
}

nlohmann::json Vbd::snapshot_list() const {
  nlohmann::json out = nlohmann::json::array();
  if (!origin_) return out;
  for (const auto& s : origin_->snapshots()) {
    out.push_back({{"device", key_},
                   {"origin", origin_name()},
                   {"id", s->id()},
                   {"store", s->store_path()},
                   {"cluster_size", s->cluster_size()},
                   {"created", s->created().tv_sec},
                   {"copied_clusters", s->copied_clusters()},
                   {"cluster_count", s->cluster_count()},
                   {"valid", s->valid()},
                   {"invalid_reason", s->valid() ? "" : s->invalid_reason()}});
  }
  return out;
}

void Vbd::snapshot_delete(const std::string& which, bool delete_store, Answer answer) {
  if (!origin_) return answer({{"ok", false}, {"error", "the storage of " + key_ + " is not open"}});
  auto snapshot = origin_->find_snapshot(which);
  if (!snapshot) return answer({{"ok", false}, {"error", "no snapshot '" + which + "' of " + key_ + " (xbbctl snapshot list)"}});
  auto origin = origin_;
  SnapshotCatalog* catalog = host_.snapshots;
  const std::string key = key_, store = snapshot->store_path();
  off_the_control_thread(
      host_,
      [origin, which, delete_store]() -> nlohmann::json {
        try {
          if (!origin->delete_snapshot(which, delete_store)) return {{"ok", false}, {"error", "cannot delete snapshot " + which}};
          return {{"ok", true}};
        } catch (const std::exception& e) {
          return {{"ok", false}, {"error", e.what()}};
        }
      },
      [answer, catalog, origin, key, store, which, delete_store](nlohmann::json result) {
        if (result.value("ok", false)) {
          if (catalog) {
            if (auto error = catalog->remove(origin->describe(), store)) spdlog::error("{}: {}", key, *error);
          }
          spdlog::info("{}: snapshot {} deleted{}", key, which, delete_store ? " with its store" : "");
        }
        answer(std::move(result));
      });
}

std::optional<std::string> Vbd::set_fault(const std::string& spec) {
  if (!fault_) return std::string("fault injection is off in this daemon (start xbbd with fault-injection = 1)");
  auto parsed = parse_fault_spec(spec);
  if (auto* error = std::get_if<std::string>(&parsed)) return *error;
  fault_->set_settings(std::get<storage::FaultSettings>(parsed));
  const auto& settings = std::get<storage::FaultSettings>(parsed);
  if (settings.fail_per_10000 != 0 || settings.latency_max_us != 0) {
    remember("fault", spec);
  } else {
    forget("fault");
  }
  spdlog::warn("{}: fault injection {}", key_, to_string(std::get<storage::FaultSettings>(parsed)));
  return std::nullopt;
}

}  // namespace xbb::backend
