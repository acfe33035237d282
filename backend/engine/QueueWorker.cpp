#include "backend/engine/QueueWorker.hpp"

#include "backend/engine/FastClock.hpp"
#include "ring/protocol/IndirectSegments.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>

#include <spdlog/spdlog.h>
#include <xen/io/blkif.h>

namespace xbb::backend {
namespace {

constexpr uint32_t kNone = UINT32_MAX;
constexpr uint64_t kSectorSize = 512;

// While consuming a batch, answer what storage has completed every this many
// requests (see consume_ring): measured with xbb-bench 4 KiB random reads from
// tmpfs, it turned ping-pong between frontend and worker into a pipeline.
constexpr unsigned kAnswerEvery = 8;

using fast_clock::now_ns;

uint32_t segment_bytes(const ring::Segment& seg) {
  return (static_cast<uint32_t>(seg.last_sect) - seg.first_sect + 1) * kSectorSize;
}

// Storage errors that mean the storage itself is gone, not one failed I/O.
bool storage_gone(int result) { return result == -ENODEV || result == -ENXIO; }

uint64_t make_tag(uint32_t list, uint32_t part) { return (static_cast<uint64_t>(list) << 32) | part; }

// The most segments one request of this queue can carry: what we advertised
// for indirect requests (bounded by Request::segments), or a direct request's.
unsigned max_request_segments(const QueueSetup& setup) {
  return std::max<unsigned>(ring::kMaxDirectSegments,
                            std::min<unsigned>(setup.geometry.max_indirect_segments, ring::kMaxSegments));
}

// Attach at the responses already published (Linux blkback's
// BACK_RING_ATTACH): 0 for a new ring, and for a ring adopted after a
// restart, requests consumed but never answered are served again.
ring::BackRing attach_ring(const QueueSetup& setup) {
  const uint32_t start_index =
      __atomic_load_n(reinterpret_cast<const uint32_t*>(setup.ring_address) + 2, __ATOMIC_ACQUIRE);
  return ring::BackRing(setup.ring_address, static_cast<unsigned>(setup.ring_pages), setup.abi, start_index);
}

void append_iov(std::vector<iovec>& iov, std::byte* base, size_t len) {
  if (!iov.empty()) {
    auto& last = iov.back();
    if (static_cast<std::byte*>(last.iov_base) + last.iov_len == base) {
      last.iov_len += len;
      return;
    }
  }
  iov.push_back({base, len});
}

}  // namespace

struct QueueWorker::Slot {
  ring::Request req{};
  uint32_t ring_index = 0;  // where the request was in the ring (its answer goes there in ring order)
  uint64_t start_ns = 0;
  uint32_t next = kNone;  // next child of the same list
  bool validated = false;
  bool failed = false;    // a grant copy or map for this request failed
  uint16_t nr_bounce = 0;
  std::array<uint32_t, ring::kMaxSegments> bounce{};   // bounce page per segment, kNone when on a persistent grant
  std::array<std::byte*, ring::kMaxSegments> data{};   // where the segment's bytes live on our side
};

struct QueueWorker::List {
  storage::IoOp op = storage::IoOp::Read;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint32_t head = kNone, tail = kNone;
  uint32_t children = 0;
  uint32_t segments = 0;
  uint32_t parts_in_storage = 0;  // storage requests outstanding for this list
  std::vector<iovec> iov;
};

QueueWorker::QueueWorker(QueueSetup setup)
    : setup_(std::move(setup)),
      ring_(attach_ring(setup_)),
      // Never more bounce pages than a full ring of the largest requests can
      // hold, whatever the setting (the pool is address space, backed as used).
      bounce_(std::min<size_t>(setup_.bounce_pages, size_t{ring_.size()} * max_request_segments(setup_))),
      tunables_(setup_.tunables),
      // validate_header() bounds an indirect request to what we advertised
      // before its pages are read: one page holds 512 segments.
      indirect_buffer_(setup_.geometry.max_indirect_segments == 0
                           ? nullptr
                           : new std::byte[ring::indirect_pages_for(max_request_segments(setup_)) * ports::kPageSize]),
      publisher_(ring_, *setup_.events, setup_.port, stats_),
      idle_({mailbox_.fd(), setup_.events->fd(), setup_.storage->completion_fd()}),
      block_sector_mask_(std::max<uint32_t>(setup_.geometry.logical_block_size, kSectorSize) / kSectorSize - 1) {
  const size_t entries = ring_.size();
  slots_.resize(entries);
  free_slots_.reserve(entries);
  for (size_t i = entries; i-- > 0;) free_slots_.push_back(static_cast<uint32_t>(i));
  lists_.resize(entries + 1);  // one list per request at most, plus the barrier's
  free_lists_.reserve(lists_.size());
  for (size_t i = lists_.size(); i-- > 0;) free_lists_.push_back(static_cast<uint32_t>(i));
  copy_batch_.reserve(ring::kMaxSegments * 4);
  completions_.resize(64);
  mapped_pages_.store(setup_.ring_pages, std::memory_order_relaxed);
  apply_tunables(tunables_);
  if (setup_.persistent_grants) {
    persistent_ = std::make_unique<PersistentGrants>(*setup_.grants, setup_.frontend, setup_.persistent_grant_capacity);
  }
}

QueueWorker::~QueueWorker() {
  request_stop();
  join();
  release_guest_resources();
}

// Unmapping a thousand persistent grants is a thousand hypercalls: done on
// the worker's own thread as it exits, so the control thread never waits
// for it (a frontend closing another disk must get its answer at once).
void QueueWorker::release_guest_resources() {
  persistent_.reset();
  if (setup_.events && setup_.port_bound) {
    setup_.events->unbind(setup_.port);
    setup_.port_bound = false;
  }
  if (setup_.ring_address != nullptr) {
    setup_.grants->unmap(setup_.ring_address, setup_.ring_pages);
    setup_.ring_address = nullptr;
  }
  mapped_pages_.store(0, std::memory_order_relaxed);
}

// Whatever escapes the request path (a host out of memory, a bug) ends this
// ring, and the Vbd fails this disk alone; the process and every other disk
// carry on. Storage may still be busy with buffers of this worker: they stay
// allocated until the worker is destroyed, which joins the thread first.
void QueueWorker::start() {
  thread_ = std::thread([this] {
    try {
      run();
    } catch (const std::exception& e) {
      failure_ = e.what();
      spdlog::error("{}: the queue worker failed: {}", setup_.name, failure_);
      try {
        release_guest_resources();
      } catch (const std::exception&) {
      }
      stopped_.store(true, std::memory_order_release);
      if (setup_.notify_control) setup_.notify_control(setup_.index, QueueEvent::Failed);
    }
  });
}

void QueueWorker::join() {
  if (thread_.joinable()) thread_.join();
}

void QueueWorker::request_stop() { mailbox_.post_stop(); }

void QueueWorker::set_tunables(const Tunables& tunables) { mailbox_.post_tunables(tunables); }

size_t QueueWorker::mapped_pages() const { return mapped_pages_.load(std::memory_order_relaxed); }

void QueueWorker::handle_commands() {
  WorkerMailbox::Commands commands;
  if (!mailbox_.take(commands)) return;
  if (commands.stop) stopping_ = true;
  if (commands.tunables) apply_tunables(*commands.tunables);
}

void QueueWorker::apply_tunables(const Tunables& tunables) {
  tunables_ = tunables;
  publisher_.configure(tunables.notify_batch, uint64_t{tunables.notify_delay_us} * 1000);
  // Ring order and completion order record answers in different places, so
  // the order changes only while no answer is owed: the ring is held (as for
  // a barrier) until what is in flight has been answered.
  order_change_pending_ = tunables.ordered_responses != ordered_;
  change_order_when_quiet();
}

bool QueueWorker::change_order_when_quiet() {
  if (!order_change_pending_ || ring_.responses_owed() != 0) return false;
  ordered_ = tunables_.ordered_responses;
  order_change_pending_ = false;
  return true;
}

// The port stays masked until the pass after the event has looked for work
// (late EOI, see EventBackoff): acknowledge_event() unmasks it, at once or
// after a back-off when the guest's events keep finding nothing to do.
void QueueWorker::handle_event_channel() {
  while (auto port = setup_.events->pending()) masked_port_ = *port;
}

void QueueWorker::acknowledge_event() {
  const uint64_t delay = event_backoff_.event_handled();
  if (delay == 0) return unmask_event();
  stats_.events_deferred.add();
  unmask_at_ns_ = now_ns() + delay;
}

void QueueWorker::unmask_event() {
  setup_.events->unmask(*masked_port_);
  masked_port_.reset();
  unmask_at_ns_ = 0;
}

uint64_t QueueWorker::wake_at() const {
  uint64_t at = publisher_.holding() ? publisher_.deadline_ns() : IdlePolicy::kNoDeadline;
  if (unmask_at_ns_ != 0) at = std::min(at, unmask_at_ns_);
  return at;
}

bool QueueWorker::can_consume() const {
  return parked_slot_ == kNone && !stopping_ && !ring_halted_ && !barrier_.active() && !order_change_pending_ &&
         !free_slots_.empty();
}

bool QueueWorker::idle() const {
  return lists_in_storage_ == 0 && parked_slot_ == kNone && open_list_ == kNone && !barrier_.active();
}

unsigned QueueWorker::service(bool storage_signalled) {
  unsigned work = 0;
  // Storage completions first: they free slots, bounce pages and storage
  // depth for the requests consumed next.
  if (storage_signalled || lists_in_storage_ != 0 || setup_.storage->has_completions()) work += reap_storage();
  const unsigned consumed = consume_ring();
  if (consumed != 0) {
    publisher_.requests_consumed(last_request_ns_);
    event_backoff_.requests_seen();
  }
  work += consumed;
  if (persistent_ && persistent_->overflowed()) purge_persistent_grants();
  setup_.storage->flush_submissions();
  // One notification for everything answered in this pass.
  publisher_.publish();
  if (stopping_) {
    publisher_.release();
  } else {
    publisher_.tick();
  }
  return work;
}

void QueueWorker::run() {
  spdlog::debug("{}: worker started ({} ring entries, {} grants)", setup_.name, ring_.size(),
                setup_.persistent_grants ? "persistent" : "copied");
  std::array<epoll_event, 4> events;
  // The first pass looks at everything; later ones only at what epoll
  // reported or what polling found.
  bool evtchn_signalled = true;
  bool storage_signalled = true;
  bool woke = false;
  auto work_showed_up = [this] {
    return (can_consume() && ring_.availability().unconsumed != 0) ||
           (lists_in_storage_ != 0 && setup_.storage->has_completions()) || mailbox_.pending();
  };
  for (;;) {
    handle_commands();
    if (evtchn_signalled) handle_event_channel();
    if (unmask_at_ns_ != 0 && now_ns() >= unmask_at_ns_) unmask_event();
    const unsigned work = service(storage_signalled);
    if (masked_port_ && unmask_at_ns_ == 0) acknowledge_event();
    evtchn_signalled = storage_signalled = false;
    if (stopping_ && idle()) break;
    if (work != 0) {
      if (woke) idle_.woke_to_work();
      woke = false;
      continue;  // more may have arrived meanwhile: look again before sleeping
    }
    if (idle_.poll(work_showed_up, wake_at())) continue;
    // About to sleep: ask the frontend for an event on its next request
    // (req_event), closing the race with one produced meanwhile.
    if (can_consume() && ring_.final_check_for_requests()) continue;
    const int n = idle_.sleep(events, wake_at());
    if (n < 0 && errno != EINTR) {
      spdlog::error("{}: epoll_wait: {}", setup_.name, std::strerror(errno));
      break;
    }
    woke = true;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.fd == setup_.events->fd()) {
        evtchn_signalled = true;
        stats_.notifications_received.add();
      }
      if (events[i].data.fd == setup_.storage->completion_fd()) storage_signalled = true;
    }
  }
  publisher_.publish();
  publisher_.release();
  release_guest_resources();
  spdlog::debug("{}: worker stopped", setup_.name);
  stopped_.store(true, std::memory_order_release);
  if (setup_.notify_control) setup_.notify_control(setup_.index, QueueEvent::Stopped);
}

unsigned QueueWorker::consume_ring() {
  unsigned consumed = 0;
  for (;;) {
    if (parked_slot_ != kNone) {
      if (!start_request(parked_slot_)) return consumed;
      parked_slot_ = kNone;
      ++consumed;
    }
    if (stopping_ || ring_halted_ || barrier_.active() || order_change_pending_) {
      dispatch_open_list(/*forced=*/true);
      if (change_order_when_quiet()) continue;
      return consumed;
    }
    if (consumed >= ring_.size()) {
      // A ring's worth per pass at most: a guest that refills its ring as
      // fast as it is answered cannot keep the worker from its commands
      // (stop, detach, new tunables), which run() takes between passes.
      dispatch_open_list(/*forced=*/true);
      return consumed;
    }
    const auto availability = ring_.availability();
    if (availability.runaway) {
      ring_halted_ = true;
      stats_.ring_halts.add();
      spdlog::error("{}: the frontend's request producer index runs more than a ring ahead; ring halted",
                    setup_.name);
      dispatch_open_list(true);
      if (setup_.notify_control) setup_.notify_control(setup_.index, QueueEvent::RingHalted);
      return consumed;
    }
    if (availability.unconsumed == 0) {
      // The ring is empty for now: submit what was merged. req_event is only
      // set when the worker is about to sleep (run()), so a frontend does not
      // notify a worker that is still busy or polling.
      dispatch_open_list(/*forced=*/true);
      return consumed;
    }
    if (free_slots_.empty()) {
      // Only a frontend that overwrites requests it has not had answered gets here.
      stats_.resource_shortages.add();
      dispatch_open_list(true);
      return consumed;
    }
    const uint32_t s = free_slots_.back();
    free_slots_.pop_back();
    Slot& slot = slots_[s];
    slot.ring_index = ring_.req_cons();
    if (!ring_.next_request(slot.req)) {
      free_slots_.push_back(s);
      return consumed;
    }
    ++consumed;
    slot.start_ns = last_request_ns_ = now_ns();
    stats_.request_received(stat_op(slot.req));
    if (!start_request(s)) {
      parked_slot_ = s;
      --consumed;  // counted when it finally starts
      stats_.resource_shortages.add();
      dispatch_open_list(true);
      return consumed;
    }
    // Storage that completes at submit (RAM, files on tmpfs) would otherwise
    // have its answers wait for the whole batch: answer every few requests,
    // so the frontend refills the ring while the rest are being served.
    if ((consumed % kAnswerEvery) == 0 && setup_.storage->has_completions()) {
      reap_storage();
      publisher_.publish();
    }
  }
}

bool QueueWorker::start_request(uint32_t s) {
  Slot& slot = slots_[s];
  ring::Request& req = slot.req;
  if (!slot.validated) {
    ring::Rejection rejection = ring::Rejection::None;
    if (req.indirect) read_indirect_segments(slot, rejection);
    if (rejection == ring::Rejection::None && !slot.failed) rejection = ring::validate(req, setup_.geometry);
    if (rejection != ring::Rejection::None || slot.failed) {
      if (rejection != ring::Rejection::None) {
        stats_.rejected_requests.add();
        spdlog::debug("{}: request id {} rejected: {}", setup_.name, req.id, ring::to_string(rejection));
      }
      respond(s, slot.failed ? int16_t{BLKIF_RSP_ERROR} : ring::response_status(rejection));
      return true;
    }
    slot.validated = true;
  }

  switch (req.operation) {
    case ring::Operation::Read:
    case ring::Operation::Write: {
      if (!prepare_segments(slot)) return false;
      if (slot.failed) {
        respond(s, BLKIF_RSP_ERROR);
        return true;
      }
      add_read_write(s);
      return true;
    }
    case ring::Operation::FlushDiskCache: {
      if (req.nr_segments > 0) {
        // Data in a flush: written after the flush, as blkback's REQ_PREFLUSH write.
        if (!prepare_segments(slot)) return false;
        if (slot.failed) {
          respond(s, BLKIF_RSP_ERROR);
          return true;
        }
      }
      dispatch_open_list(false);
      const uint32_t interval = tunables_.flush_interval;
      const bool skip = tunables_.disable_flush || (interval > 1 && (++flushes_seen_ % interval) != 0);
      const bool flush = !skip && setup_.storage_properties->can_flush;
      if (req.nr_segments > 0) {
        start_barrier(s, BarrierSequence::flushed_write(flush));
        return true;
      }
      if (!flush) {
        respond(s, BLKIF_RSP_OKAY);
        return true;
      }
      const uint32_t l = alloc_list(storage::IoOp::Flush);
      lists_[l].head = lists_[l].tail = s;
      lists_[l].children = 1;
      submit_list(l);
      return true;
    }
    case ring::Operation::WriteBarrier: {
      if (req.nr_segments > 0) {
        if (!prepare_segments(slot)) return false;
        if (slot.failed) {
          respond(s, BLKIF_RSP_ERROR);
          return true;
        }
      }
      start_barrier(s, BarrierSequence::barrier(req.nr_segments > 0, setup_.storage_properties->can_flush &&
                                                                          !tunables_.disable_flush));
      return true;
    }
    case ring::Operation::Discard: {
      dispatch_open_list(false);
      const bool secure = ring::wants_secure_discard(req, setup_.geometry);
      const uint32_t l = alloc_list(secure ? storage::IoOp::SecureDiscard : storage::IoOp::Discard);
      List& list = lists_[l];
      list.head = list.tail = s;
      list.children = 1;
      list.offset = req.sector_number * kSectorSize;
      list.length = req.discard_nr_sectors * kSectorSize;
      submit_list(l);
      return true;
    }
    default:
      respond(s, BLKIF_RSP_EOPNOTSUPP);
      return true;
  }
}

void QueueWorker::read_indirect_segments(Slot& slot, ring::Rejection& rejection) {
  ring::Request& req = slot.req;
  rejection = ring::validate_header(req, setup_.geometry);
  if (rejection != ring::Rejection::None) return;
  size_t remaining = static_cast<size_t>(req.nr_segments) * sizeof(blkif_request_segment);
  copy_batch_.clear();
  for (unsigned page = 0; page < req.nr_indirect_pages; ++page) {
    const auto len = static_cast<uint16_t>(std::min(remaining, ports::kPageSize));
    copy_batch_.push_back({ports::GrantCopySegment::Direction::FromGuest, setup_.frontend, req.indirect_grefs[page], 0,
                           len, indirect_buffer_.get() + page * ports::kPageSize, 0});
    remaining -= len;
  }
  bool ok = setup_.grants->copy(copy_batch_) == 0;
  for (auto& seg : copy_batch_) ok = ok && seg.status == 0;
  if (!ok) {
    slot.failed = true;
    return;
  }
  if (!ring::decode_indirect_segments(
          req, std::span<const std::byte>(indirect_buffer_.get(), ring::indirect_bytes_for(req.nr_segments)))) {
    slot.failed = true;
  }
}

bool QueueWorker::prepare_segments(Slot& slot) {
  const ring::Request& req = slot.req;
  uint16_t need = 0;
  for (unsigned i = 0; i < req.nr_segments; ++i) {
    slot.bounce[i] = kNone;
    slot.data[i] = nullptr;
    // A segment that starts off a logical block within its page (legal, see
    // Validator.cpp) is bounced: storage opened O_DIRECT wants its buffers
    // block-aligned, and a bounce page always is.
    if (persistent_ && (req.segments[i].first_sect & block_sector_mask_) == 0) {
      bool map_failed = false;
      auto* page =
          static_cast<std::byte*>(persistent_->lookup_or_map(req.segments[i].gref, slot.start_ns, map_failed));
      mapped_pages_.store(setup_.ring_pages + persistent_->size(), std::memory_order_relaxed);
      if (map_failed) {
        slot.failed = true;
        return true;
      }
      if (page != nullptr) {
        slot.data[i] = page + req.segments[i].first_sect * kSectorSize;
        continue;
      }
    }
    ++need;
  }
  std::array<uint32_t, ring::kMaxSegments> pages;
  if (!bounce_.take(std::span(pages.data(), need))) return false;
  slot.nr_bounce = need;
  unsigned next = 0;
  for (unsigned i = 0; i < req.nr_segments; ++i) {
    if (slot.data[i] != nullptr) continue;
    slot.bounce[i] = pages[next++];
    slot.data[i] = bounce_.page(slot.bounce[i]);
  }
  return true;
}

void QueueWorker::add_read_write(uint32_t s) {
  Slot& slot = slots_[s];
  const ring::Request& req = slot.req;
  const auto op = req.operation == ring::Operation::Read ? storage::IoOp::Read : storage::IoOp::Write;
  const uint64_t offset = req.sector_number * kSectorSize;
  if (open_list_ != kNone) {
    List& open = lists_[open_list_];
    // Each segment adds at most one iovec: a list never holds more than
    // storage accepts (IOV_MAX), whatever max_list_segments says.
    const bool joins = !tunables_.no_coalesce_reqs && open.op == op && open.offset + open.length == offset &&
                       open.segments + req.nr_segments <= tunables_.max_list_segments &&
                       open.iov.size() + req.nr_segments <= IOV_MAX;
    if (joins) {
      stats_.coalesced_requests.add();
    } else {
      dispatch_open_list(/*forced=*/false);
    }
  }
  if (open_list_ == kNone) {
    open_list_ = alloc_list(op);
    lists_[open_list_].offset = offset;
  }
  List& list = lists_[open_list_];
  slot.next = kNone;
  if (list.tail == kNone) {
    list.head = s;
  } else {
    slots_[list.tail].next = s;
  }
  list.tail = s;
  list.children++;
  list.segments += req.nr_segments;
  for (unsigned i = 0; i < req.nr_segments; ++i) {
    const uint32_t len = segment_bytes(req.segments[i]);
    append_iov(list.iov, slot.data[i], len);
    list.length += len;
  }
  if (tunables_.no_coalesce_reqs) dispatch_open_list(/*forced=*/false);
}

void QueueWorker::dispatch_open_list(bool forced) {
  if (open_list_ == kNone) return;
  const uint32_t l = open_list_;
  open_list_ = kNone;
  (forced ? stats_.forced_dispatches : stats_.normal_dispatches).add();
  if (lists_[l].op == storage::IoOp::Write && !copy_in(lists_[l])) {
    submit_singletons(l);
    return;
  }
  submit_list(l);
}

// One batched grant copy for every bounced segment of a list; a child whose
// segment failed is marked failed. Returns whether every segment succeeded.
bool QueueWorker::copy_list(List& list, ports::GrantCopySegment::Direction direction) {
  // With persistent grants nothing is bounced: skip the per-segment walks.
  bool any_bounced = false;
  for (uint32_t s = list.head; s != kNone && !any_bounced; s = slots_[s].next) any_bounced = slots_[s].nr_bounce != 0;
  if (!any_bounced) return true;
  copy_batch_.clear();
  for (uint32_t s = list.head; s != kNone; s = slots_[s].next) {
    const Slot& slot = slots_[s];
    for (unsigned i = 0; i < slot.req.nr_segments; ++i) {
      if (slot.bounce[i] == kNone) continue;
      const auto& seg = slot.req.segments[i];
      copy_batch_.push_back({direction, setup_.frontend, seg.gref, static_cast<uint16_t>(seg.first_sect * kSectorSize),
                             static_cast<uint16_t>(segment_bytes(seg)), slot.data[i], 0});
    }
  }
  if (copy_batch_.empty()) return true;
  const bool batch_ok = setup_.grants->copy(copy_batch_) == 0;
  bool all_ok = batch_ok;
  size_t k = 0;
  for (uint32_t s = list.head; s != kNone; s = slots_[s].next) {
    Slot& slot = slots_[s];
    for (unsigned i = 0; i < slot.req.nr_segments; ++i) {
      if (slot.bounce[i] == kNone) continue;
      if (!batch_ok || copy_batch_[k].status != 0) {
        slot.failed = true;
        all_ok = false;
      }
      ++k;
    }
  }
  return all_ok;
}

bool QueueWorker::copy_in(List& list) { return copy_list(list, ports::GrantCopySegment::Direction::FromGuest); }

void QueueWorker::submit_list(uint32_t l) {
  List& list = lists_[l];
  storage::IoRequest io;
  io.op = list.op;
  io.offset = list.offset;
  io.length = list.length;
  io.iov = list.iov.data();
  io.iovcnt = static_cast<unsigned>(list.iov.size());
  io.tag = make_tag(l, kNone);
  const int rc = setup_.storage->submit(io);
  if (rc != 0) {
    // The storage refused outright (its queue holds at least a ring's worth,
    // so -EAGAIN cannot happen): answer now.
    complete_list(l, rc);
    return;
  }
  list.parts_in_storage = 1;
  lists_in_storage_++;
}

// Some children of a write list could not be copied in: write each good
// child on its own and fail the others, so one bad grant fails one request.
void QueueWorker::submit_singletons(uint32_t l) {
  List& list = lists_[l];
  std::vector<uint32_t> children;
  for (uint32_t s = list.head; s != kNone; s = slots_[s].next) children.push_back(s);
  list.head = list.tail = kNone;
  list.children = 0;
  for (uint32_t s : children) {
    Slot& slot = slots_[s];
    if (slot.failed) {
      respond(s, BLKIF_RSP_ERROR);
      continue;
    }
    const uint32_t single = alloc_list(storage::IoOp::Write);
    List& one = lists_[single];
    one.head = one.tail = s;
    slot.next = kNone;
    one.children = 1;
    one.offset = slot.req.sector_number * kSectorSize;
    for (unsigned i = 0; i < slot.req.nr_segments; ++i) {
      const uint32_t len = segment_bytes(slot.req.segments[i]);
      append_iov(one.iov, slot.data[i], len);
      one.length += len;
    }
    submit_list(single);
  }
  free_list(l);
}

unsigned QueueWorker::reap_storage() {
  unsigned reaped = 0;
  for (;;) {
    const size_t n = setup_.storage->reap(completions_);
    reaped += static_cast<unsigned>(n);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t l = static_cast<uint32_t>(completions_[i].tag >> 32);
      if (l >= lists_.size() || lists_[l].parts_in_storage == 0) {
        spdlog::error("{}: storage completed an unknown tag {:#x}", setup_.name, completions_[i].tag);
        continue;
      }
      lists_[l].parts_in_storage--;
      lists_in_storage_--;
      complete_list(l, completions_[i].result);
    }
    if (n < completions_.size()) break;
  }
  if (barrier_.draining() && lists_in_storage_ == 0) run_barrier(barrier_.drained());
  return reaped;
}

void QueueWorker::complete_list(uint32_t l, int result) {
  List& list = lists_[l];
  if (l == barrier_list_) {
    // A short barrier write is an error, as for any write.
    if (list.op == storage::IoOp::Write && result >= 0 && static_cast<uint64_t>(result) != list.length) result = -EIO;
    run_barrier(barrier_.finished(result));
    return;
  }
  const bool moves_data = list.op == storage::IoOp::Read || list.op == storage::IoOp::Write;
  if (result >= 0 && moves_data && static_cast<uint64_t>(result) != list.length) {
    spdlog::error("{}: storage moved {} of {} bytes at offset {}", setup_.name, result, list.length, list.offset);
    result = -EIO;
  }
  const int16_t status = status_for(result);
  if (status == BLKIF_RSP_OKAY && list.op == storage::IoOp::Read) copy_out(list);
  if (status == BLKIF_RSP_OKAY && moves_data) {
    (list.op == storage::IoOp::Read ? stats_.bytes_read : stats_.bytes_written).add(list.length);
  }
  for (uint32_t s = list.head; s != kNone;) {
    const uint32_t next = slots_[s].next;
    respond(s, slots_[s].failed ? int16_t{BLKIF_RSP_ERROR} : status);
    s = next;
  }
  free_list(l);
}

void QueueWorker::copy_out(List& list) { copy_list(list, ports::GrantCopySegment::Direction::ToGuest); }

int16_t QueueWorker::status_for(int result) {
  if (result >= 0) return BLKIF_RSP_OKAY;
  if (result == -EOPNOTSUPP) return BLKIF_RSP_EOPNOTSUPP;
  if (storage_gone(result) && setup_.notify_control) setup_.notify_control(setup_.index, QueueEvent::StorageGone);
  return BLKIF_RSP_ERROR;
}

void QueueWorker::start_barrier(uint32_t s, const BarrierSequence::Plan& plan) {
  dispatch_open_list(false);
  barrier_list_ = alloc_list(storage::IoOp::Write);
  List& list = lists_[barrier_list_];
  list.head = list.tail = s;
  list.children = 1;
  list.offset = slots_[s].req.sector_number * kSectorSize;
  BarrierSequence::Step first = barrier_.begin(plan);
  if (first == BarrierSequence::Step::Wait && lists_in_storage_ == 0) first = barrier_.drained();
  run_barrier(first);
}

void QueueWorker::run_barrier(BarrierSequence::Step step) {
  List& list = lists_[barrier_list_];
  const uint32_t s = list.head;
  const Slot& slot = slots_[s];
  switch (step) {
    case BarrierSequence::Step::Wait:
      return;
    case BarrierSequence::Step::Flush:
      list.op = storage::IoOp::Flush;
      submit_list(barrier_list_);
      return;
    case BarrierSequence::Step::Write:
      list.op = storage::IoOp::Write;
      list.iov.clear();
      list.length = 0;
      list.segments = slot.req.nr_segments;
      for (unsigned i = 0; i < slot.req.nr_segments; ++i) {
        const uint32_t len = segment_bytes(slot.req.segments[i]);
        append_iov(list.iov, slot.data[i], len);
        list.length += len;
      }
      if (!copy_in(list)) return run_barrier(barrier_.finished(-EFAULT));
      submit_list(barrier_list_);
      return;
    case BarrierSequence::Step::Answer: {
      const uint32_t l = barrier_list_;
      barrier_list_ = kNone;
      const int16_t status = status_for(barrier_.result());
      if (status == BLKIF_RSP_OKAY) stats_.bytes_written.add(lists_[l].length);
      respond(s, status);
      free_list(l);
      return;
    }
  }
}

// The persistent-grant cache is full and the frontend uses grants it does
// not hold: every 100 ms (Linux blkback's LRU_INTERVAL) the least recently
// used grants that no request in flight uses make room (PersistentGrants.hpp).
void QueueWorker::purge_persistent_grants() {
  constexpr uint64_t kPurgeIntervalNs = 100'000'000;
  const uint64_t now = now_ns();
  if (now < next_purge_ns_) return;
  next_purge_ns_ = now + kPurgeIntervalNs;
  // A grant last used before the oldest request in flight was consumed is
  // used by none of them.
  std::vector<bool> free(slots_.size());
  for (uint32_t s : free_slots_) free[s] = true;
  uint64_t oldest = now;
  for (uint32_t s = 0; s < slots_.size(); ++s) {
    if (!free[s]) oldest = std::min(oldest, slots_[s].start_ns);
  }
  const size_t purged = persistent_->purge(persistent_->purge_count(), oldest);
  stats_.persistent_grants_purged.add(purged);
  mapped_pages_.store(setup_.ring_pages + persistent_->size(), std::memory_order_relaxed);
}

void QueueWorker::respond(uint32_t s, int16_t status) {
  Slot& slot = slots_[s];
  if (ordered_) {
    // Later than the oldest request owed an answer: this one waits for it.
    if (slot.ring_index != ring_.rsp_prod_pvt()) stats_.responses_held_in_order.add();
    ring_.answer(slot.ring_index, slot.req.id, slot.req.wire_operation, status);
  } else {
    ring_.push_response(slot.req.id, slot.req.wire_operation, status);
  }
  const uint64_t now = now_ns();
  stats_.request_answered(stat_op(slot.req), status == BLKIF_RSP_OKAY, now > slot.start_ns ? now - slot.start_ns : 0);
  release_segments(slot);
  slot.validated = false;
  slot.failed = false;
  slot.next = kNone;
  free_slots_.push_back(s);
}

void QueueWorker::release_segments(Slot& slot) {
  if (slot.nr_bounce == 0) return;
  std::array<uint32_t, ring::kMaxSegments> pages;
  unsigned n = 0;
  for (unsigned i = 0; i < slot.req.nr_segments && n < slot.nr_bounce; ++i) {
    if (slot.bounce[i] != kNone) pages[n++] = slot.bounce[i];
  }
  bounce_.give(std::span(pages.data(), n));
  slot.nr_bounce = 0;
}

uint32_t QueueWorker::alloc_list(storage::IoOp op) {
  const uint32_t l = free_lists_.back();
  free_lists_.pop_back();
  List& list = lists_[l];
  list.op = op;
  list.offset = 0;
  list.length = 0;
  list.head = list.tail = kNone;
  list.children = 0;
  list.segments = 0;
  list.parts_in_storage = 0;
  list.iov.clear();
  return l;
}

void QueueWorker::free_list(uint32_t l) { free_lists_.push_back(l); }

}  // namespace xbb::backend
