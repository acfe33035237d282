#include "tests/frontend/SoftBlkfront.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "ring/protocol/IndirectSegments.hpp"
#include "ring/protocol/RequestCodec.hpp"
#include "tests/sim/guestmem/SimGuestEvents.hpp"
#include "tests/sim/guestmem/SimGuestMemory.hpp"
#include "ring/protocol/RingGeometry.hpp"
#include "ring/protocol/SharedRingIndices.hpp"
#include "xenstore/WithTransaction.hpp"
#include "xenstore/XenstoreKeys.hpp"

namespace xbb::frontend {

using xs::XenbusState;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kPage = 4096;
// Longest wait for an event: it bounds what a lost event costs, and a wait
// that runs it out before responses show up counts as a missing event.
constexpr std::chrono::milliseconds kEventWaitCap{100};
constexpr unsigned kSector = 512;
constexpr uint8_t kUnknownOperation = 0x42;
constexpr ports::DomId kForeignDomain = 0x7ff0;  // a domain that is not the backend

std::string protocol_name(ring::Abi abi) {
  switch (abi) {
    case ring::Abi::X86_32:
      return "x86_32-abi";
    case ring::Abi::X86_64:
      return "x86_64-abi";
    case ring::Abi::Native:
      break;
  }
  return "";
}

int poll_fd(int fd, Clock::time_point deadline, milliseconds cap) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  const auto wait = std::clamp(left, milliseconds(0), cap);
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(wait.count()));
}

}  // namespace

SoftBlkfront::SoftBlkfront(xs::XenStore& xs, sim::SimGuestMemory& memory,
                           std::shared_ptr<sim::SimDomainLink> link, uint32_t devid, FrontendConfig config)
    : xs_(xs),
      memory_(memory),
      link_(std::move(link)),
      events_(std::make_unique<sim::SimGuestEvents>(link_)),
      devid_(devid),
      config_(config),
      frontend_("/local/domain/" + std::to_string(memory.domid()) + "/device/vbd/" + std::to_string(devid)),
      watch_token_("softblkfront:" + std::to_string(devid)) {}

SoftBlkfront::~SoftBlkfront() {
  try {
    teardown_queues();
    if (!backend_.empty()) xs_.unwatch(backend_, watch_token_);
  } catch (const std::exception& e) {
    spdlog::debug("softblkfront {}: teardown: {}", frontend_, e.what());
  }
}

void SoftBlkfront::violation(std::string message) {
  spdlog::warn("softblkfront {}: backend protocol violation: {}", frontend_, message);
  violations_.push_back(std::move(message));
}

std::string SoftBlkfront::read_backend(const std::string& key) {
  try {
    return xs_.read(xs::kNoTransaction, backend_ + "/" + key).value_or("");
  } catch (const xs::Error&) {
    return "";
  }
}

std::optional<uint64_t> SoftBlkfront::read_backend_uint(const std::string& key) {
  return xs::read_uint(xs_, xs::kNoTransaction, backend_ + "/" + key);
}

void SoftBlkfront::write_state(XenbusState state) { xs::write_state(xs_, xs::kNoTransaction, frontend_, state); }

std::optional<XenbusState> SoftBlkfront::backend_state() {
  if (backend_.empty()) return std::nullopt;
  try {
    return xs::read_state(xs_, xs::kNoTransaction, backend_);
  } catch (const xs::Error&) {
    return std::nullopt;  // the toolstack removed the directory we may read
  }
}

bool SoftBlkfront::wait_backend_state(XenbusState state, milliseconds timeout) {
  return wait_backend([state](std::optional<XenbusState> now) { return now == state; }, timeout);
}

bool SoftBlkfront::wait_backend(const std::function<bool(std::optional<XenbusState>)>& done, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    while (xs_.read_watch()) {
    }
    if (done(backend_state())) return true;
    if (Clock::now() >= deadline) return false;
    // The watch wakes us; the cap only bounds the cost of a missed event.
    poll_fd(xs_.watch_fd(), deadline, milliseconds(50));
  }
}

void SoftBlkfront::connect() {
  if (connected_) throw std::logic_error("softblkfront: already connected");
  if (backend_.empty()) {
    auto backend = xs_.read(xs::kNoTransaction, frontend_ + "/backend");
    if (!backend) throw std::runtime_error(frontend_ + "/backend is missing");
    backend_ = *backend;
    xs_.watch(backend_, watch_token_);
  }
  if (!wait_backend_state(XenbusState::InitWait, config_.timeout)) {
    throw std::runtime_error("backend " + backend_ + " did not reach InitWait (state " +
                             read_backend("state") + ")");
  }
  info_ = BackendInfo{};
  info_.max_ring_page_order = static_cast<unsigned>(read_backend_uint("max-ring-page-order").value_or(0));
  info_.max_queues = static_cast<unsigned>(read_backend_uint("multi-queue-max-queues").value_or(1));
  info_.max_indirect_segments =
      static_cast<unsigned>(read_backend_uint("feature-max-indirect-segments").value_or(0));
  info_.ring_page_order = std::min(config_.ring_page_order, info_.max_ring_page_order);
  info_.queues = std::max(1u, std::min(config_.queues, info_.max_queues));
  abi_ = config_.protocol.value_or(ring::Abi::Native);

  setup_queues();
  publish_rings();
  write_state(XenbusState::Initialised);

  const auto deadline = Clock::now() + config_.timeout;
  while (!wait_backend_state(XenbusState::Connected, milliseconds(20))) {
    const auto state = backend_state();
    if (state == XenbusState::Closing || state == XenbusState::Closed || Clock::now() >= deadline) {
      throw std::runtime_error("backend " + backend_ + " did not connect (state " + read_backend("state") +
                               ", error '" + read_backend("error") + "')");
    }
  }
  read_disk_properties();
  write_state(XenbusState::Connected);
  connected_ = true;
}

void SoftBlkfront::setup_queues() {
  const unsigned pages = 1u << info_.ring_page_order;
  const ports::DomId backend_id =
      static_cast<ports::DomId>(xs::read_uint(xs_, xs::kNoTransaction, frontend_ + "/backend-id").value_or(0));
  queues_.clear();
  queues_.resize(info_.queues);
  for (auto& q : queues_) {
    for (unsigned i = 0; i < pages; ++i) {
      auto page = memory_.alloc_page();
      if (!page) throw std::runtime_error("softblkfront: guest out of memory for the ring");
      std::memset(memory_.page_address(*page), 0, kPage);
      q.ring_pages.push_back(*page);
      q.ring_grants.push_back(memory_.grant(*page, backend_id, /*readonly=*/false));
    }
    q.mapping = RingMapping(memory_.memory_fd(), q.ring_pages);
    ring::init_shared_ring(q.mapping.address(), pages);
    q.ring = std::make_unique<ring::FrontRing>(q.mapping.address(), pages, abi_);
    q.port = events_->alloc_unbound(backend_id);
    q.shadow.resize(q.ring->size());
    for (uint32_t id = q.ring->size(); id-- > 0;) q.free_ids.push_back(id);
  }
}

void SoftBlkfront::publish_rings() {
  xs::with_transaction(xs_, [&](xs::TxId tx) {
    // A reconnect may use another geometry (queues, ring order): what the
    // previous connection wrote must not be read as part of this one.
    if (auto keys = xs_.directory(tx, frontend_)) {
      for (const auto& key : *keys) {
        if (key.rfind("ring-ref", 0) == 0 || key.rfind("queue-", 0) == 0 || key == "ring-page-order" ||
            key == "multi-queue-num-queues" || key == "event-channel")
          xs_.rm(tx, frontend_ + "/" + key);
      }
    }
    auto write_queue = [&](const std::string& dir, const Queue& q) {
      if (q.ring_grants.size() == 1) {
        xs_.write(tx, dir + "/ring-ref", std::to_string(q.ring_grants[0]));
      } else {
        for (size_t i = 0; i < q.ring_grants.size(); ++i)
          xs_.write(tx, dir + "/ring-ref" + std::to_string(i), std::to_string(q.ring_grants[i]));
      }
      xs_.write(tx, dir + "/event-channel", std::to_string(q.port));
    };
    if (queues_[0].ring_grants.size() > 1)
      xs_.write(tx, frontend_ + "/ring-page-order", std::to_string(info_.ring_page_order));
    if (queues_.size() == 1) {
      write_queue(frontend_, queues_[0]);
    } else {
      xs_.write(tx, frontend_ + "/multi-queue-num-queues", std::to_string(queues_.size()));
      for (size_t k = 0; k < queues_.size(); ++k) write_queue(frontend_ + "/queue-" + std::to_string(k), queues_[k]);
    }
    if (config_.protocol) {
      xs_.write(tx, frontend_ + "/protocol", protocol_name(*config_.protocol));
    } else {
      xs_.rm(tx, frontend_ + "/protocol");
    }
    xs_.write(tx, frontend_ + "/feature-persistent", config_.persistent_grants ? "1" : "0");
  });
}

bool closing_or_gone(std::optional<XenbusState> state) {
  return !state || state == XenbusState::Closing || state == XenbusState::Closed;
}

bool closed_or_gone(std::optional<XenbusState> state) { return !state || state == XenbusState::Closed; }

uint64_t SoftBlkfront::refresh_capacity() {
  info_.sectors = read_backend_uint("sectors").value_or(info_.sectors);
  return info_.sectors;
}

void SoftBlkfront::read_disk_properties() {
  info_.sectors = read_backend_uint("sectors").value_or(0);
  info_.sector_size = static_cast<uint32_t>(read_backend_uint("sector-size").value_or(512));
  info_.physical_sector_size =
      static_cast<uint32_t>(read_backend_uint("physical-sector-size").value_or(info_.sector_size));
  info_.info = static_cast<unsigned>(read_backend_uint("info").value_or(0));
  info_.flush = read_backend_uint("feature-flush-cache").value_or(0) == 1;
  info_.barrier = read_backend_uint("feature-barrier").value_or(0) == 1;
  info_.discard = read_backend_uint("feature-discard").value_or(0) == 1;
  info_.discard_secure = info_.discard && read_backend_uint("discard-secure").value_or(0) == 1;
  info_.discard_granularity = static_cast<uint32_t>(read_backend_uint("discard-granularity").value_or(0));
  info_.persistent = config_.persistent_grants && read_backend_uint("feature-persistent").value_or(0) == 1;
}

void SoftBlkfront::teardown_queues() {
  for (auto& q : queues_) {
    for (auto& shadow : q.shadow) {
      if (shadow.in_use) end_request_grants(q, shadow);
      shadow.reset();
    }
    q.ring.reset();
    q.mapping = RingMapping();
    for (size_t i = 0; i < q.ring_grants.size(); ++i) {
      // A refused revoke means the backend still maps the ring: keep the
      // page out of circulation rather than hand mapped memory out again.
      if (memory_.revoke(q.ring_grants[i])) memory_.free_page(q.ring_pages[i]);
    }
    if (q.port != 0) events_->close(q.port);
    for (auto& [page, ref] : q.pool_all) {
      if (memory_.revoke(ref)) memory_.free_page(page);
    }
  }
  queues_.clear();
  in_flight_ = 0;
  stash_.clear();
}

void SoftBlkfront::close() {
  write_state(XenbusState::Closing);
  // A backend directory the toolstack removed counts as closed, as for
  // Linux (its watch reads state Unknown): waiting for an exact state would
  // miss one the toolstack removed between two looks.
  if (!wait_backend(closing_or_gone, config_.timeout))
    throw std::runtime_error("backend " + backend_ + " did not answer Closing (state " + read_backend("state") + ")");
  write_state(XenbusState::Closed);
  if (!wait_backend(closed_or_gone, config_.timeout))
    throw std::runtime_error("backend " + backend_ + " did not reach Closed (state " + read_backend("state") + ")");
  connected_ = false;
  teardown_queues();
}

void SoftBlkfront::reinitialise() {
  write_state(XenbusState::Initialising);
  if (!wait_backend_state(XenbusState::InitWait, config_.timeout))
    throw std::runtime_error("backend " + backend_ + " did not return to InitWait (state " + read_backend("state") +
                             ")");
}

uint32_t SoftBlkfront::grants_held() const { return memory_.granted(); }

std::vector<uint64_t> SoftBlkfront::unanswered() const {
  std::vector<uint64_t> handles;
  for (const auto& q : queues_)
    for (const auto& shadow : q.shadow)
      if (shadow.in_use) handles.push_back(shadow.handle);
  return handles;
}

size_t SoftBlkfront::queue_depth() const { return queues_.empty() ? 0 : queues_[0].ring->size(); }

uint32_t SoftBlkfront::max_request_sectors() const {
  unsigned segments = ring::kMaxDirectSegments;
  if (config_.use_indirect && info_.max_indirect_segments > segments)
    segments = std::min(info_.max_indirect_segments, ring::kMaxSegments);
  const unsigned per = std::clamp(config_.segment_sectors, 1u, ring::kSectorsPerPage);
  const unsigned offset = config_.first_sector_offset % ring::kSectorsPerPage;
  return std::min(per, ring::kSectorsPerPage - offset) + (segments - 1) * per;
}

unsigned SoftBlkfront::pick_queue(const BlkRequest& request) {
  if (request.queue) {
    if (*request.queue >= queues_.size()) throw std::invalid_argument("softblkfront: no such queue");
    return queues_[*request.queue].ring->full() ? UINT32_MAX : *request.queue;
  }
  for (size_t tried = 0; tried < queues_.size(); ++tried) {
    const unsigned q = next_queue_++ % queues_.size();
    if (!queues_[q].ring->full()) return q;
  }
  return UINT32_MAX;
}

std::pair<uint32_t, ports::GrantRef> SoftBlkfront::data_page(Queue& queue, bool writable_by_backend, bool pooled) {
  const ports::DomId backend_id = 0;
  if (pooled) {
    if (!queue.pool_free.empty()) {
      auto p = queue.pool_free.back();
      queue.pool_free.pop_back();
      return p;
    }
    auto page = memory_.alloc_page();
    if (!page) throw std::runtime_error("softblkfront: guest out of memory");
    std::pair<uint32_t, ports::GrantRef> p{*page, memory_.grant(*page, backend_id, /*readonly=*/false)};
    queue.pool_all.push_back(p);
    return p;
  }
  auto page = memory_.alloc_page();
  if (!page) throw std::runtime_error("softblkfront: guest out of memory");
  return {*page, memory_.grant(*page, backend_id, !writable_by_backend)};
}

std::optional<uint64_t> SoftBlkfront::submit(const BlkRequest& request, bool last) {
  if (!connected_) throw std::logic_error("softblkfront: submit before connect");
  using Kind = BlkRequest::Kind;
  // Barriers and flushes may carry data (direct segments only).
  const bool ordered_write = request.kind == Kind::Barrier || request.kind == Kind::Flush;
  const bool carries_data =
      request.kind == Kind::Read || request.kind == Kind::Write || (ordered_write && !request.data.empty());
  const uint64_t bytes = request.kind == Kind::Read ? uint64_t(request.sectors) * kSector
                         : carries_data            ? request.data.size()
                                                   : 0;
  if (bytes % kSector != 0) throw std::invalid_argument("softblkfront: data is not a multiple of 512 bytes");
  if ((request.kind == Kind::Read || request.kind == Kind::Write) && bytes == 0)
    throw std::invalid_argument("softblkfront: read/write without data");
  const unsigned offset = config_.first_sector_offset % ring::kSectorsPerPage;
  const unsigned per_segment = std::clamp(config_.segment_sectors, 1u, ring::kSectorsPerPage);
  const uint64_t data_sectors = bytes / kSector;
  const unsigned first_capacity = std::min(per_segment, ring::kSectorsPerPage - offset);
  const unsigned nsegs =
      data_sectors == 0 ? 0
                        : 1 + static_cast<unsigned>((data_sectors - std::min<uint64_t>(data_sectors, first_capacity) +
                                                     per_segment - 1) / per_segment);
  const bool force_indirect = request.misbehaviour == Misbehaviour::GarbageIndirect ||
                              request.misbehaviour == Misbehaviour::TooManyIndirect || request.force_indirect;
  const bool indirect = carries_data && !ordered_write && (nsegs > ring::kMaxDirectSegments || force_indirect);
  if (indirect && !force_indirect && (!config_.use_indirect || nsegs > std::min(info_.max_indirect_segments, ring::kMaxSegments)))
    throw std::invalid_argument("softblkfront: request of " + std::to_string(nsegs) + " segments is too large");
  if (!indirect && nsegs > ring::kMaxDirectSegments)
    throw std::invalid_argument("softblkfront: barrier of " + std::to_string(nsegs) + " segments is too large");

  const unsigned q = pick_queue(request);
  if (q == UINT32_MAX) return std::nullopt;
  Queue& queue = queues_[q];
  const uint32_t id = queue.free_ids.back();
  Shadow& shadow = queue.shadow[id];
  shadow.reset();
  shadow.kind = request.kind;

  ring::Request req{};
  req.id = config_.unique_ids ? id + uint64_t{queue.ring->size()} * ++queue.id_generation : id;
  req.handle = static_cast<uint16_t>(devid_);
  req.sector_number = request.sector;
  switch (request.kind) {
    case Kind::Read: req.wire_operation = ring::kOpRead; break;
    case Kind::Write: req.wire_operation = ring::kOpWrite; break;
    case Kind::Barrier: req.wire_operation = ring::kOpWriteBarrier; break;
    case Kind::Flush: req.wire_operation = ring::kOpFlushDiskCache; break;
    case Kind::Discard: req.wire_operation = ring::kOpDiscard; break;
  }
  req.operation = ring::operation_from_wire(req.wire_operation);
  if (request.kind == Kind::Discard) {
    req.discard_nr_sectors = request.sectors;
    req.discard_secure = request.secure;
  }

  // Data pages: reads are granted writable, writes read-only (or pooled).
  const bool backend_writes = request.kind == Kind::Read;
  uint64_t done = 0;
  for (unsigned i = 0; i < nsegs; ++i) {
    const unsigned first = i == 0 ? offset : 0;
    const unsigned count =
        static_cast<unsigned>(std::min<uint64_t>(std::min(per_segment, ring::kSectorsPerPage - first), data_sectors - done));
    const bool pooled = info_.persistent && request.misbehaviour == Misbehaviour::None;
    auto [page, ref] = data_page(queue, backend_writes, pooled);
    ring::Segment seg{ref, static_cast<uint8_t>(first), static_cast<uint8_t>(first + count - 1)};
    auto* base = static_cast<std::byte*>(memory_.page_address(page)) + first * kSector;
    if (!config_.move_data) {
      // Benchmark mode: the pages hold whatever they held.
    } else if (request.kind == Kind::Read) {
      std::memset(base, 0xEE, count * kSector);  // so a read that moves nothing cannot pass
    } else {
      std::memcpy(base, request.data.data() + done * kSector, count * kSector);
    }
    shadow.data_pages.push_back(page);
    shadow.pooled.push_back(pooled);
    if (pooled) {
      shadow.pool_pages.emplace_back(page, ref);
    } else {
      shadow.grants.push_back(ref);
    }
    shadow.segments.push_back(seg);
    done += count;
  }
  shadow.read_bytes = request.kind == Kind::Read ? static_cast<uint32_t>(bytes) : 0;

  // Misbehaviour that changes segments (after every grant was made, so a
  // revoked ref cannot be handed out again inside this request).
  std::vector<ring::Segment> altered;  // only built for misbehaviour (no copy per request)
  const std::vector<ring::Segment>* sent = &shadow.segments;
  if (!shadow.segments.empty()) {
    switch (request.misbehaviour) {
      case Misbehaviour::FirstAfterLast:
        altered = shadow.segments;
        altered[0].first_sect = 5, altered[0].last_sect = 2;
        break;
      case Misbehaviour::LastBeyondPage:
        altered = shadow.segments;
        altered[0].first_sect = 0, altered[0].last_sect = 8;
        break;
      case Misbehaviour::WrongDomainGrant:
        altered = shadow.segments;
        memory_.revoke(shadow.grants[0]);
        shadow.grants[0] = memory_.grant(shadow.data_pages[0], kForeignDomain, !backend_writes);
        altered[0].gref = shadow.grants[0];
        break;
      default:
        break;
    }
    if (!altered.empty()) sent = &altered;
  }
  const std::vector<ring::Segment>& segments = *sent;

  if (indirect) {
    req.indirect = true;
    const unsigned advertised = info_.max_indirect_segments;
    const unsigned claimed = request.misbehaviour == Misbehaviour::TooManyIndirect
                                 ? std::max(advertised + 1, ring::kMaxDirectSegments + 1)
                                 : nsegs;
    req.nr_segments = static_cast<uint16_t>(claimed);
    const unsigned pages = std::min(ring::indirect_pages_for(claimed), ring::kMaxIndirectPages);
    req.nr_indirect_pages = static_cast<uint8_t>(pages);
    std::vector<std::byte>& image = indirect_image_;
    image.assign(pages * kPage, std::byte{0});
    if (request.misbehaviour == Misbehaviour::GarbageIndirect) {
      std::mt19937 rng(0xbadc0de + id);
      for (auto& b : image) b = static_cast<std::byte>(rng());
    } else {
      ring::encode_indirect_segments(segments, image);
    }
    for (unsigned p = 0; p < pages; ++p) {
      auto page = memory_.alloc_page();
      if (!page) throw std::runtime_error("softblkfront: guest out of memory");
      std::memcpy(memory_.page_address(*page), image.data() + p * kPage, kPage);
      shadow.indirect_pages.push_back(*page);
      shadow.indirect_grants.push_back(memory_.grant(*page, 0, /*readonly=*/true));
      req.indirect_grefs[p] = shadow.indirect_grants.back();
    }
  } else {
    req.nr_segments = static_cast<uint16_t>(segments.size());
    std::copy(segments.begin(), segments.end(), req.segments.begin());
  }
  if (request.misbehaviour == Misbehaviour::TooManySegments) req.nr_segments = ring::kMaxDirectSegments + 1;
  if (request.misbehaviour == Misbehaviour::UnknownOperation) {
    req.wire_operation = kUnknownOperation;
    req.operation = ring::Operation::Unknown;
  }
  if (request.wire_operation) {
    req.wire_operation = *request.wire_operation;
    req.operation = ring::operation_from_wire(req.wire_operation);
    if (indirect && req.operation != ring::Operation::Read && req.operation != ring::Operation::Write)
      req.operation = ring::Operation::Unknown;
  }
  if (request.misbehaviour == Misbehaviour::RevokedGrant && !shadow.grants.empty()) {
    memory_.revoke(shadow.grants[0]);
    shadow.grants.erase(shadow.grants.begin());
  }

  shadow.expected_operation = req.wire_operation;  // for INDIRECT, the indirect_op
  shadow.wire_id = req.id;
  shadow.ring_index = queue.ring->req_prod_pvt();
  if (!queue.ring->push_request(req)) {
    end_request_grants(queue, shadow);
    shadow.reset();
    throw std::logic_error("softblkfront: the request does not encode");
  }
  queue.free_ids.pop_back();
  shadow.in_use = true;
  shadow.handle = next_handle_++;
  ++in_flight_;
  if (last && queue.ring->push_requests_and_check_notify()) events_->notify(queue.port);
  return shadow.handle;
}

void SoftBlkfront::end_request_grants(Queue& queue, Shadow& shadow) {
  for (auto ref : shadow.grants) {
    if (!memory_.revoke(ref)) violation("grant " + std::to_string(ref) + " is still in use after the response");
  }
  for (size_t i = 0; i < shadow.data_pages.size(); ++i) {
    if (!shadow.pooled[i]) memory_.free_page(shadow.data_pages[i]);
  }
  for (size_t i = 0; i < shadow.indirect_grants.size(); ++i) {
    if (!memory_.revoke(shadow.indirect_grants[i])) {
      violation("indirect grant " + std::to_string(shadow.indirect_grants[i]) + " is still in use after the response");
    }
    memory_.free_page(shadow.indirect_pages[i]);
  }
  // Pool pages go back to the pool (still granted).
  queue.pool_free.insert(queue.pool_free.end(), shadow.pool_pages.begin(), shadow.pool_pages.end());
  shadow.pool_pages.clear();
  shadow.grants.clear();
  shadow.indirect_grants.clear();
}

void SoftBlkfront::Shadow::reset() {
  in_use = false;
  handle = 0;
  wire_id = 0;
  ring_index = 0;
  expected_operation = 0;
  kind = BlkRequest::Kind::Read;
  data_pages.clear();
  grants.clear();
  pooled.clear();
  pool_pages.clear();
  segments.clear();
  indirect_pages.clear();
  indirect_grants.clear();
  read_bytes = 0;
}

void SoftBlkfront::process_queue(unsigned q, std::vector<BlkCompletion>& out) {
  Queue& queue = queues_[q];
  if (!queue.ring) return;
  for (;;) {
    ring::Response rsp;
    for (uint32_t index = queue.ring->rsp_cons(); queue.ring->next_response(rsp); index = queue.ring->rsp_cons()) {
      const uint64_t slot = rsp.id % queue.shadow.size();
      if (!queue.shadow[slot].in_use || queue.shadow[slot].wire_id != rsp.id) {
        ++responses_not_pending_;
        violation("queue " + std::to_string(q) + ": response for id " + std::to_string(rsp.id) + " that is not pending");
        continue;
      }
      Shadow& shadow = queue.shadow[slot];
      if (shadow.ring_index != index) ++responses_out_of_ring_order_;
      if (rsp.operation != shadow.expected_operation) {
        violation("queue " + std::to_string(q) + ": response for id " + std::to_string(rsp.id) + " has operation " +
                  std::to_string(rsp.operation) + ", request had " + std::to_string(shadow.expected_operation));
      }
      BlkCompletion done;
      done.handle = shadow.handle;
      done.status = rsp.status;
      done.operation = rsp.operation;
      if (shadow.kind == BlkRequest::Kind::Read && rsp.status == ring::kStatusOkay && config_.move_data) {
        done.data.resize(shadow.read_bytes);
        size_t at = 0;
        for (size_t i = 0; i < shadow.segments.size(); ++i) {
          const auto& seg = shadow.segments[i];
          const auto* base = static_cast<const std::byte*>(memory_.page_address(shadow.data_pages[i]));
          std::memcpy(done.data.data() + at, base + seg.offset_bytes(), seg.length_bytes());
          at += seg.length_bytes();
        }
      }
      end_request_grants(queue, shadow);
      shadow.reset();
      queue.free_ids.push_back(static_cast<uint32_t>(slot));
      --in_flight_;
      out.push_back(std::move(done));
    }
    if (queue.ring->halted()) {
      if (violations_.empty() || violations_.back().find("runaway") == std::string::npos)
        violation("queue " + std::to_string(q) + ": runaway response producer");
      return;
    }
    if (!queue.ring->final_check_for_responses()) return;
  }
}

void SoftBlkfront::drain_responses(std::vector<BlkCompletion>& out) {
  while (auto port = events_->pending()) events_->unmask(*port);
  const size_t before = out.size();
  for (unsigned q = 0; q < queues_.size(); ++q) process_queue(q, out);
  if (waited_out_ && out.size() > before) ++responses_without_event_;
  waited_out_ = false;
}

bool SoftBlkfront::wait_for_events(milliseconds timeout) {
  pollfd p{events_->fd(), POLLIN, 0};
  const bool signalled = ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
  waited_out_ = !signalled && timeout >= kEventWaitCap;
  return signalled;
}

std::vector<BlkCompletion> SoftBlkfront::poll(milliseconds timeout) {
  std::vector<BlkCompletion> out;
  out.reserve(in_flight_ + stash_.size());  // one allocation, not one per doubling
  out.assign(std::make_move_iterator(stash_.begin()), std::make_move_iterator(stash_.end()));
  stash_.clear();
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    drain_responses(out);
    if (!out.empty() || in_flight_ == 0) return out;
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return out;
    // The event channel wakes us; the cap bounds the cost of a lost event
    // (which the response checks would not notice).
    wait_for_events(std::min(left, kEventWaitCap));
  }
}

BlkCompletion SoftBlkfront::execute(const BlkRequest& request) {
  const auto deadline = Clock::now() + config_.timeout;
  std::optional<uint64_t> handle;
  while (!(handle = submit(request))) {
    for (auto& c : poll(milliseconds(50))) stash_.push_back(std::move(c));
    if (Clock::now() >= deadline) throw std::runtime_error("softblkfront: no room on the ring");
  }
  std::vector<BlkCompletion> others;
  for (;;) {
    std::vector<BlkCompletion> batch;
    drain_responses(batch);
    for (auto& c : batch) {
      if (c.handle == *handle) {
        for (auto& o : others) stash_.push_back(std::move(o));
        return c;
      }
      others.push_back(std::move(c));
    }
    if (Clock::now() >= deadline) {
      for (auto& o : others) stash_.push_back(std::move(o));
      throw std::runtime_error("softblkfront " + frontend_ + ": no response within the timeout");
    }
    wait_for_events(kEventWaitCap);
  }
}

int16_t SoftBlkfront::write(uint64_t sector, std::span<const std::byte> data) {
  BlkRequest r;
  r.kind = BlkRequest::Kind::Write;
  r.sector = sector;
  r.data.assign(data.begin(), data.end());
  return execute(r).status;
}

int16_t SoftBlkfront::read(uint64_t sector, std::span<std::byte> out) {
  BlkRequest r;
  r.kind = BlkRequest::Kind::Read;
  r.sector = sector;
  r.sectors = static_cast<uint32_t>(out.size() / kSector);
  auto c = execute(r);
  if (c.status == ring::kStatusOkay) std::copy(c.data.begin(), c.data.end(), out.begin());
  return c.status;
}

int16_t SoftBlkfront::flush() {
  BlkRequest r;
  r.kind = BlkRequest::Kind::Flush;
  return execute(r).status;
}

int16_t SoftBlkfront::discard(uint64_t sector, uint32_t sectors, bool secure) {
  BlkRequest r;
  r.kind = BlkRequest::Kind::Discard;
  r.sector = sector;
  r.sectors = sectors;
  r.secure = secure;
  return execute(r).status;
}

uint64_t SoftBlkfront::storm_events(unsigned q, const std::atomic<bool>& stop) {
  const ports::EvtchnPort port = queues_.at(q).port;
  uint64_t sent = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    events_->notify(port);
    ++sent;
  }
  return sent;
}

uint64_t SoftBlkfront::storm_requests_once(unsigned q) {
  Queue& queue = queues_.at(q);
  if (!request_storm_) {
    auto page = memory_.alloc_page();
    if (!page) throw std::runtime_error("softblkfront: guest out of memory");
    ring::Request read{};
    read.wire_operation = ring::kOpRead;
    read.operation = ring::Operation::Read;
    read.handle = static_cast<uint16_t>(devid_);
    read.nr_segments = 1;
    read.segments[0] = {memory_.grant(*page, 0, /*readonly=*/false), 0, 7};
    RequestStorm storm{q, queue.ring->req_prod_pvt(), std::vector<std::byte>(ring::entry_bytes(abi_))};
    if (!ring::encode_request(abi_, read, storm.image)) throw std::logic_error("softblkfront: storm request does not encode");
    request_storm_ = std::move(storm);
  }
  RequestStorm& storm = *request_storm_;
  ring::SharedRingIndices shared(queue.mapping.address());
  const uint32_t size = queue.ring->size();
  const size_t entry = storm.image.size();
  // Up to a ring past the responses published: never runaway, always full.
  const uint32_t limit = shared.rsp_prod_acquire() + size;
  const uint32_t old = storm.prod;
  if (old == limit) return 0;
  for (; storm.prod != limit; ++storm.prod)
    std::memcpy(shared.entries() + size_t(storm.prod & (size - 1)) * entry, storm.image.data(), entry);
  shared.publish_req_prod(storm.prod);
  // Only when asked (RING_PUSH_REQUESTS_AND_CHECK_NOTIFY): no system call
  // while the backend is busy, so the storm keeps up with it.
  ring::SharedRingIndices::full_barrier();
  if (uint32_t(storm.prod - shared.req_event()) < uint32_t(storm.prod - old)) events_->notify(queue.port);
  return storm.prod - old;
}

GuestMisbehaviour::~GuestMisbehaviour() { stop(); }

void GuestMisbehaviour::stop() {
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
}

std::string GuestMisbehaviour::first_error() const {
  std::lock_guard lock(error_mutex_);
  return first_error_;
}

void GuestMisbehaviour::start(std::function<std::string()> step, std::chrono::microseconds pause) {
  thread_ = std::thread([this, step = std::move(step), pause] {
    while (!stop_.load(std::memory_order_relaxed)) {
      std::string error = step();
      if (error.empty()) {
        actions_.fetch_add(1, std::memory_order_relaxed);
      } else {
        // A hostile guest does not give up; it only stops being counted.
        if (refused_.fetch_add(1, std::memory_order_relaxed) == 0) {
          std::lock_guard lock(error_mutex_);
          first_error_ = std::move(error);
        }
      }
      if (pause.count() > 0) std::this_thread::sleep_for(pause);
    }
  });
}

XenstoreFlood::XenstoreFlood(std::unique_ptr<xs::XenStore> connection, std::string frontend, XenstoreFloodConfig config)
    : xs_(std::move(connection)), frontend_(std::move(frontend)), config_(std::move(config)) {
  using Pattern = XenstoreFloodConfig::Pattern;
  start(
      [this]() -> std::string {
        try {
          const uint64_t n = serial_++;
          switch (config_.pattern) {
            case Pattern::NewNodes:
              xs_->write(xs::kNoTransaction,
                         frontend_ + "/" + config_.prefix + "-" + std::to_string(n % std::max(config_.nodes, 1u)),
                         std::to_string(n));
              break;
            case Pattern::RewriteNode:
              xs_->write(xs::kNoTransaction, frontend_ + "/" + config_.prefix, std::to_string(n));
              break;
            case Pattern::StateNode: {
              auto state = xs_->read(xs::kNoTransaction, frontend_ + "/state");
              if (!state) return "no state node to rewrite";
              xs_->write(xs::kNoTransaction, frontend_ + "/state", *state);
              break;
            }
          }
          return "";
        } catch (const std::exception& e) {
          return e.what();
        }
      },
      config_.pause);
}

XenstoreFlood::~XenstoreFlood() { stop(); }

EventStorm::EventStorm(storage::UniqueFd notifier, EventStormConfig config) : notifier_(std::move(notifier)) {
  start(
      [this]() -> std::string {
        const uint64_t one = 1;
        // A full counter (EAGAIN) is a pending event like any other.
        if (::write(notifier_.get(), &one, sizeof one) < 0 && errno != EAGAIN) return std::strerror(errno);
        return "";
      },
      config.pause);
}

EventStorm::~EventStorm() { stop(); }

std::unique_ptr<XenstoreFlood> SoftBlkfront::start_xenstore_flood(std::unique_ptr<xs::XenStore> connection,
                                                                  XenstoreFloodConfig config) {
  return std::make_unique<XenstoreFlood>(std::move(connection), frontend_, std::move(config));
}

std::unique_ptr<EventStorm> SoftBlkfront::start_event_storm(unsigned q, EventStormConfig config) {
  if (!connected_) throw std::logic_error("softblkfront: an event storm needs a connected ring");
  auto notifier = events_->duplicate_notifier(queues_.at(q).port);
  if (!notifier) throw std::runtime_error("softblkfront: cannot duplicate the event channel of queue " + std::to_string(q));
  return std::make_unique<EventStorm>(std::move(notifier), config);
}

void SoftBlkfront::corrupt_producer(unsigned q) {
  Queue& queue = queues_.at(q);
  ring::SharedRingIndices shared(queue.mapping.address());
  shared.publish_req_prod(queue.ring->req_prod_pvt() + queue.ring->size() * 3 + 5);
  events_->notify(queue.port);
}

}  // namespace xbb::frontend
