#include "backend/engine/Vbd.hpp"

#include <xen/io/blkif.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "backend/engine/DeviceDirectory.hpp"
#include "backend/engine/FaultSpec.hpp"
#include "backend/engine/FrontendRings.hpp"
#include "ring/protocol/RingGeometry.hpp"
#include "storage/snapshot/CowOriginRegistry.hpp"
#include "xenstore/Vdev.hpp"
#include "xenstore/WithTransaction.hpp"
#include "xenstore/XenstoreKeys.hpp"

namespace xbb::backend {

using xs::XenbusState;

Vbd::Vbd(VbdHost& host, xs::BackendPath path)
    : host_(host), path_(std::move(path)), key_(key_of(path_)), tunables_(host.options.tunables) {
  backend_ = path_.path;
  frontend_ = xs::expected_frontend_path(path_.frontend_domid, path_.devid, path_.type);
}

Vbd::~Vbd() {
  workers_.clear();
  if (opener_.joinable()) opener_.join();
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
    case Phase::Closing: return "closing";
    case Phase::Closed: return "closed";
    case Phase::Releasing: return "releasing";
    case Phase::Released: return "released";
  }
  return "?";
}

void Vbd::set_state(XenbusState state) {
  try {
    xs::write_state(host_.xs, xs::kNoTransaction, backend_, state);
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

  const auto state = xs::read_state(xs, xs::kNoTransaction, backend_);
  publish_features();
  const bool adopt = state && (*state == XenbusState::Connected) &&
                     frontend_state() == std::optional(XenbusState::Connected);
  if (!adopt) set_state(XenbusState::InitWait);
  phase_ = Phase::InitWait;
  spdlog::info("{}: serving {} for domain {} ({}{})", key_, target_.empty() ? "(no target)" : target_,
               path_.frontend_domid, read_only_ ? "read-only" : "read-write", adopt ? ", adopting a live connection" : "");
  open_storage_async();
  return true;
}

void Vbd::publish_features() {
  const auto& o = host_.options;
  xs::with_transaction(host_.xs, [&](xs::TxId tx) {
    host_.xs.write(tx, backend_ + "/feature-max-indirect-segments", std::to_string(o.max_indirect_segments));
    host_.xs.write(tx, backend_ + "/multi-queue-max-queues", std::to_string(o.max_queues));
    host_.xs.write(tx, backend_ + "/max-ring-page-order", std::to_string(o.max_ring_page_order));
  });
}

void Vbd::open_storage_async() {
  if (target_.empty()) {
    on_storage_opened(nullptr, "the backend has no 'params' (the storage target)");
    return;
  }
  storage_opening_ = true;
  auto open = host_.open_storage;
  auto post = host_.post;
  std::string key = key_, target = target_;
  bool ro = read_only_, faults = host_.options.fault_injection;
  SnapshotCatalog catalog = host_.snapshots ? *host_.snapshots : SnapshotCatalog("");
  // Opening (an NBD connect, a snapshot store's map) may take a while: never on the control thread.
  opener_ = std::thread([open, post, key, target, ro, faults, catalog] {
    std::shared_ptr<StorageStack> stack;
    std::string error;
    try {
      auto opened = open(target, ro);
      const auto stores = catalog.stores_of(opened->describe());
      stack = std::make_shared<StorageStack>(build_storage_stack(std::move(opened), faults, stores));
    } catch (const std::exception& e) {
      error = e.what();
    }
    post(key, [stack, error](Vbd& vbd) { vbd.on_storage_opened(stack, error); });
  });
}

void Vbd::on_storage_opened(std::shared_ptr<StorageStack> stack, std::string error) {
  storage_opening_ = false;
  if (opener_.joinable()) opener_.join();
  if (!stack) {
    storage_error_ = error.empty() ? "cannot open the storage" : error;
    spdlog::error("{}: {}", key_, storage_error_);
    report_hotplug_error(storage_error_);
    return;
  }
  for (const auto& failure : stack->attach_errors) spdlog::error("{}: snapshot not re-attached: {}", key_, failure);
  if (!read_only_ && stack->top->properties().read_only) read_only_ = true;
  storage_ = stack->top;
  origin_ = stack->origin;
  fault_ = stack->fault;
  storage::OriginRegistry::instance().add(origin_name(), origin_);
  try {
    host_.xs.write(xs::kNoTransaction, backend_ + "/hotplug-status", "connected");
  } catch (const std::exception& e) {
    spdlog::warn("{}: writing hotplug status: {}", key_, e.what());
  }
  if (phase_ == Phase::InitWait) on_frontend_changed();
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
    if (phase_ == Phase::Connected) {
      stop_workers();
      set_state(XenbusState::Closing);
      phase_ = Phase::Closing;
    }
  }
  // The toolstack may have written our state node (libxl writes Closing on
  // removal); re-assert the state we are in.
  const auto state = xs::read_state(host_.xs, xs::kNoTransaction, backend_);
  if (phase_ == Phase::Closing && state != XenbusState::Closing) set_state(XenbusState::Closing);
  maybe_finish_closing();
}

void Vbd::on_frontend_changed() {
  if (phase_ == Phase::Released || phase_ == Phase::Releasing || phase_ == Phase::New) return;
  const auto state = frontend_state();
  if (!state) {
    if (!host_.xs.directory(xs::kNoTransaction, frontend_)) {
      spdlog::info("{}: frontend {} vanished", key_, frontend_);
      // libxl removes the frontend and then waits for state 6: answer it
      // once the I/O in flight has drained, or it waits out its timeout.
      closed_on_release_ = true;
      release();
    }
    return;
  }
  switch (*state) {
    case XenbusState::Initialising:
      if (phase_ == Phase::Closed && !release_when_closed_) {
        spdlog::info("{}: frontend reinitialising; waiting for it again", key_);
        set_state(XenbusState::InitWait);
        phase_ = Phase::InitWait;
      }
      break;
    case XenbusState::Initialised:
    case XenbusState::Connected:
      if (phase_ == Phase::InitWait && storage_) connect();
      break;
    case XenbusState::Closing:
    case XenbusState::Closed:
    case XenbusState::Unknown:
      if (phase_ == Phase::Connected || phase_ == Phase::InitWait) {
        stop_workers();
        set_state(XenbusState::Closing);
        phase_ = Phase::Closing;
      }
      maybe_finish_closing();
      break;
    default:
      break;
  }
}

void Vbd::connect() {
  std::string error;
  if (!connect_queues(error)) {
    fail(error);
    return;
  }
  try {
    publish_connected();
  } catch (const std::exception& e) {
    fail(std::string("publishing the connection: ") + e.what());
    return;
  }
  phase_ = Phase::Connected;
  for (auto& worker : workers_) worker->start();
  spdlog::info("{}: connected: {} queue(s), ring order {}, {}, {} grants", key_, workers_.size(), ring_page_order_,
               abi_name_, persistent_ ? "persistent" : "copied");
}

bool Vbd::connect_queues(std::string& error) {
  FrontendLimits limits{host_.options.max_ring_page_order, host_.options.max_queues};
  auto parsed = read_frontend_rings(host_.xs, frontend_, limits);
  if (auto* message = std::get_if<std::string>(&parsed)) {
    error = *message;
    return false;
  }
  const auto& rings = std::get<FrontendRings>(parsed);
  persistent_ = host_.options.persistent_grants && rings.wants_persistent;
  ring_page_order_ = rings.ring_page_order;
  abi_name_ = std::string(ring::to_string(rings.abi));
  const auto& props = storage_->properties();

  ring::DiskGeometry geometry{};
  geometry.sectors = props.size_bytes / 512;
  geometry.logical_block_size = props.logical_block_size;
  geometry.read_only = read_only_;
  geometry.max_indirect_segments = static_cast<uint16_t>(host_.options.max_indirect_segments);
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
    std::string key = key_;
    setup.notify_control = [post, key](unsigned index, QueueEvent event) {
      post(key, [index, event](Vbd& vbd) { vbd.on_queue_event(index, event); });
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
  xs::with_transaction(xs, [&](xs::TxId tx) {
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
  spdlog::error("{}: {}", key_, message);
  try {
    host_.xs.write(xs::kNoTransaction, backend_ + "/error", message);
  } catch (const std::exception&) {
  }
  stop_workers();
  set_state(XenbusState::Closing);
  phase_ = Phase::Closing;
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
  }
  maybe_finish_closing();
}

// Called whenever something that closing waits for may have happened.
void Vbd::maybe_finish_closing() {
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
  spdlog::info("{}: closed", key_);
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
  if (phase_ == Phase::Connected) {
    stop_workers();
    set_state(XenbusState::Closing);
    phase_ = Phase::Closing;
    maybe_finish_closing();
  } else if (phase_ != Phase::Closing) {
    release();
  }
}

void Vbd::detach_for_shutdown() {
  if (phase_ == Phase::Connected || phase_ == Phase::InitWait || phase_ == Phase::Closing) {
    set_state(XenbusState::Closing);
  }
  release();
}

void Vbd::release() {
  if (phase_ == Phase::Released) return;
  phase_ = Phase::Releasing;
  stop_workers();
  maybe_finish_closing();
}

std::optional<std::string> Vbd::set_tunable(const std::string& name, const std::string& value) {
  Tunables next = tunables_;
  if (auto error = next.set(name, value)) return error;
  tunables_ = next;
  for (auto& worker : workers_) worker->set_tunables(tunables_);
  return std::nullopt;
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
         {"mapped_grant_pages", mapped_grant_pages()}};
  if (storage_) out["size_bytes"] = storage_->properties().size_bytes;
  if (origin_) out["snapshots"] = origin_->snapshots().size();
  if (fault_) out["fault"] = to_string(fault_->settings());
  nlohmann::json tun = nlohmann::json::object();
  for (auto& [name, value] : tunables_.list()) tun[name] = value;
  out["tunables"] = tun;
}

nlohmann::json Vbd::snapshot_create(const std::string& store, uint32_t cluster_size) {
  if (!origin_) throw std::runtime_error("the storage of " + key_ + " is not open");
  if (store.empty() || store[0] != '/') throw std::runtime_error("the snapshot store must be an absolute path");
  auto snapshot = origin_->create_snapshot(store, cluster_size);
  if (host_.snapshots) {
    if (auto error = host_.snapshots->add(origin_->describe(), snapshot->store_path())) {
      spdlog::error("{}: snapshot {} taken but not recorded, so it will not survive a restart: {}", key_,
                    snapshot->id(), *error);
    }
  }
  spdlog::info("{}: snapshot {} taken into {}", key_, snapshot->id(), snapshot->store_path());
  return {{"id", snapshot->id()}, {"store", snapshot->store_path()}, {"cluster_size", snapshot->cluster_size()}};
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

void Vbd::snapshot_delete(const std::string& which, bool delete_store) {
  if (!origin_) throw std::runtime_error("the storage of " + key_ + " is not open");
  auto snapshot = origin_->find_snapshot(which);
  if (!snapshot) throw std::runtime_error("no snapshot '" + which + "' of " + key_ + " (xbbctl snapshot list)");
  const std::string store = snapshot->store_path();
  if (!origin_->delete_snapshot(which, delete_store)) throw std::runtime_error("cannot delete snapshot " + which);
  if (host_.snapshots) {
    if (auto error = host_.snapshots->remove(origin_->describe(), store)) spdlog::error("{}: {}", key_, *error);
  }
  spdlog::info("{}: snapshot {} deleted{}", key_, which, delete_store ? " with its store" : "");
}

std::optional<std::string> Vbd::set_fault(const std::string& spec) {
  if (!fault_) return std::string("fault injection is off in this daemon (start xbbd with fault-injection = 1)");
  auto parsed = parse_fault_spec(spec);
  if (auto* error = std::get_if<std::string>(&parsed)) return *error;
  fault_->set_settings(std::get<storage::FaultSettings>(parsed));
  spdlog::warn("{}: fault injection {}", key_, to_string(std::get<storage::FaultSettings>(parsed)));
  return std::nullopt;
}

}  // namespace xbb::backend
