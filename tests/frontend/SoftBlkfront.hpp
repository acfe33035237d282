// A software blkfront: plays a guest's disk driver against a backend the way
// Linux xen-blkfront does (negotiation, ring pages, grants, persistent-grant
// pool, indirect requests, response checks, close and reconnect), on top of a
// simulated guest: its memory (SimGuestMemory), its event channels
// (SimGuestEvents over a SimDomainLink) and a xenstore connection as domU.
//
// It works the same whether the guest lives in the test's process (a
// SimXenStore + SimHypervisor::add_domain) or in a child process (a
// SimStoreClient + SimGuestConnection). One thread uses an instance.
//
// Besides well-formed I/O it can misbehave on purpose (see Misbehaviour and
// corrupt_producer()) so tests can check that a backend answers hostile
// guests with error responses instead of crashing.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "ring/protocol/Abi.hpp"
#include "ring/protocol/FrontRing.hpp"
#include "ring/protocol/Request.hpp"
#include "storage/UniqueFd.hpp"
#include "tests/frontend/RingMapping.hpp"
#include "tests/sim/guestmem/SimDomainLink.hpp"
#include "xenstore/XenStore.hpp"
#include "xenstore/XenbusState.hpp"

namespace xbb::sim {
class SimGuestMemory;
class SimGuestEvents;
}  // namespace xbb::sim

namespace xbb::frontend {

using std::chrono::milliseconds;

// What the frontend asks for; the backend's limits cap each of these.
struct FrontendConfig {
  // nullopt: no `protocol` key (native); otherwise the ABI named in the key.
  std::optional<ring::Abi> protocol;
  unsigned ring_page_order = 0;    // wanted; min(this, max-ring-page-order)
  unsigned queues = 1;             // wanted; min(this, multi-queue-max-queues)
  bool persistent_grants = false;  // write feature-persistent=1
  bool use_indirect = true;        // use INDIRECT when offered and needed
  // Sector offset (0..7) at which the first segment's data starts in its
  // page; later segments start at 0 (as a bio's first bvec may not).
  unsigned first_sector_offset = 0;
  // Sectors (1..8) each segment carries at most: 8 fills pages; fewer makes
  // every segment end inside its page (a guest whose buffers are sub-page
  // pieces), so no two segments are ever contiguous in memory.
  unsigned segment_sectors = 8;
  milliseconds timeout{10000};     // every wait for the backend
  // false (benchmarks only): move no data on the frontend side. Write pages
  // are not filled from BlkRequest::data (only its size counts), read pages
  // are not poisoned before and not copied out after (BlkCompletion::data
  // stays empty). The backend's work is unchanged; the frontend's is what a
  // guest whose data already lives in the granted pages would do.
  bool move_data = true;
  // Never reuse a request id on a ring (ids are the shadow index plus a
  // multiple of the ring size that grows with each reuse). Linux reuses an
  // id as soon as its response arrives, so a backend that answers a request
  // twice can hit the id's next request and go unnoticed; with unique ids
  // every duplicate answer is an id that is not pending.
  bool unique_ids = false;
};

// What the backend published (read at connect).
struct BackendInfo {
  unsigned max_ring_page_order = 0;
  unsigned max_queues = 1;
  unsigned max_indirect_segments = 0;
  uint64_t sectors = 0;
  uint32_t sector_size = 512;
  uint32_t physical_sector_size = 512;
  unsigned info = 0;
  bool flush = false;
  bool barrier = false;
  bool discard = false;
  bool discard_secure = false;
  uint32_t discard_granularity = 0;
  bool persistent = false;  // both sides agreed
  // What this connection uses.
  unsigned ring_page_order = 0;
  unsigned queues = 1;
};

enum class Misbehaviour {
  None,
  FirstAfterLast,       // a segment with first_sect > last_sect
  LastBeyondPage,       // a segment with last_sect >= 8
  TooManySegments,      // a direct request with 12 segments
  TooManyIndirect,      // an indirect request beyond the advertised maximum
  RevokedGrant,         // a segment whose grant was revoked before submission
  WrongDomainGrant,     // a segment granted to another domain than the backend's
  GarbageIndirect,      // indirect pages full of random bytes
  UnknownOperation,     // operation byte 0x42
};

// A misbehaviour that runs on a thread of its own, beside whatever the
// guest's own thread does (I/O, close, reconnect), until stop() or
// destruction. These are the hostile guests of issue #15 items 2 and 3: a
// backend must keep serving every other guest, and this guest's own
// requests, stop and detach, while one runs.
class GuestMisbehaviour {
 public:
  GuestMisbehaviour(const GuestMisbehaviour&) = delete;
  GuestMisbehaviour& operator=(const GuestMisbehaviour&) = delete;
  virtual ~GuestMisbehaviour();

  // Ends the loop and joins its thread. Idempotent.
  void stop();
  // What the loop did so far: xenstore writes, or notifications sent.
  uint64_t actions() const { return actions_.load(std::memory_order_relaxed); }
  // Actions the hypervisor refused (a node xenstored would not write, ...).
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }
  // The first refusal's message, "" if none.
  std::string first_error() const;

 protected:
  GuestMisbehaviour() = default;
  // Runs `step` in a loop on a new thread, `pause` apart, until stop().
  // step() returns "" when the action was done, else why it was refused.
  void start(std::function<std::string()> step, std::chrono::microseconds pause);

 private:
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> actions_{0};
  std::atomic<uint64_t> refused_{0};
  mutable std::mutex error_mutex_;
  std::string first_error_;
};

// Issue #15 item 2: a guest that writes nodes under its own frontend
// directory in a tight loop (everything there is the guest's to write, and
// xenstored fires every watch on the directory for each write).
struct XenstoreFloodConfig {
  enum class Pattern {
    NewNodes,     // PREFIX-0 .. PREFIX-(nodes-1), cycling, each with a new value
    RewriteNode,  // PREFIX alone, a new value each time
    StateNode,    // `state`, rewritten with the value it holds (only while the
                  // guest's own thread leaves its state alone)
  };
  Pattern pattern = Pattern::NewNodes;
  unsigned nodes = 256;
  std::string prefix = "flood";
  std::chrono::microseconds pause{0};  // between writes; 0 is a tight loop
};

class XenstoreFlood final : public GuestMisbehaviour {
 public:
  // `connection`: a xenstore connection of the guest's domain for this
  // thread alone; `frontend`: the frontend directory.
  XenstoreFlood(std::unique_ptr<xs::XenStore> connection, std::string frontend, XenstoreFloodConfig config);
  ~XenstoreFlood() override;

 private:
  std::unique_ptr<xs::XenStore> xs_;
  std::string frontend_;
  XenstoreFloodConfig config_;
  uint64_t serial_ = 0;  // the loop thread's
};

// Issue #15 item 3: a guest that notifies its event channel in a loop
// without putting a request on the ring.
struct EventStormConfig {
  std::chrono::microseconds pause{0};  // between notifications; 0 is a tight loop
};

class EventStorm final : public GuestMisbehaviour {
 public:
  // `notifier`: a descriptor that notifies the port when 1 is written to it
  // (SimGuestEvents::duplicate_notifier).
  EventStorm(storage::UniqueFd notifier, EventStormConfig config);
  ~EventStorm() override;

 private:
  storage::UniqueFd notifier_;
};

struct BlkRequest {
  enum class Kind { Read, Write, Barrier, Flush, Discard };
  Kind kind = Kind::Read;
  uint64_t sector = 0;           // 512-byte units
  uint32_t sectors = 0;          // Read: how many to read; Discard: how many to discard
  std::vector<std::byte> data;   // Write/Barrier: the data (a multiple of 512 bytes)
  bool secure = false;           // Discard: BLKIF_DISCARD_SECURE
  Misbehaviour misbehaviour = Misbehaviour::None;
  std::optional<unsigned> queue; // default: round robin
  // Protocol corners a well-behaved frontend may use: send Read/Write as
  // BLKIF_OP_INDIRECT even when it fits a direct request, and put another
  // byte in the operation (direct) or indirect_op (indirect) on the wire.
  bool force_indirect = false;
  std::optional<uint8_t> wire_operation;
};

struct BlkCompletion {
  uint64_t handle = 0;
  int16_t status = 0;            // BLKIF_RSP_*
  uint8_t operation = 0;         // the operation byte of the response
  std::vector<std::byte> data;   // Read: the data read (when status is OKAY)
};

// Backend states a closing frontend waits for (a removed directory counts).
bool closing_or_gone(std::optional<xs::XenbusState> state);
bool closed_or_gone(std::optional<xs::XenbusState> state);

class SoftBlkfront {
 public:
  // `xs` is the guest's own xenstore connection (domid = memory.domid()).
  SoftBlkfront(xs::XenStore& xs, sim::SimGuestMemory& memory, std::shared_ptr<sim::SimDomainLink> link,
               uint32_t devid, FrontendConfig config = {});
  ~SoftBlkfront();
  SoftBlkfront(const SoftBlkfront&) = delete;
  SoftBlkfront& operator=(const SoftBlkfront&) = delete;

  const std::string& frontend_path() const { return frontend_; }
  const std::string& backend_path() const { return backend_; }
  FrontendConfig& config() { return config_; }

  // Negotiates like xen-blkfront: waits for InitWait, reads the backend's
  // limits, sets up rings and event channels, writes them with protocol
  // and feature-persistent in one transaction, goes Initialised, waits for
  // Connected, reads the disk's properties and goes Connected. Throws
  // std::runtime_error naming what failed (or timed out).
  void connect();
  bool connected() const { return connected_; }
  const BackendInfo& backend() const { return info_; }

  // Like Linux on removal or module unload: Closing, wait for the backend's
  // Closing (or Closed), Closed, wait for the backend's Closed, then end
  // every grant. Requests still in flight are abandoned. Throws on timeout.
  void close();
  // Driver reload / kexec: back to Initialising (after close()), and expect
  // the backend to answer InitWait. Then connect() again.
  void reinitialise();
  // What Linux blkfront does when the backend writes Connected again while
  // connected (blkfront_connect: a capacity change): re-reads `sectors`.
  uint64_t refresh_capacity();
  // Reads the backend's state node.
  std::optional<xs::XenbusState> backend_state();
  bool wait_backend_state(xs::XenbusState state, milliseconds timeout);
  // Waits until `done(state)` holds (nothing: the backend's directory is gone).
  bool wait_backend(const std::function<bool(std::optional<xs::XenbusState>)>& done, milliseconds timeout);

  // Async I/O. submit() returns a handle, or nullopt when the chosen ring
  // (or every ring, for round robin) is full: poll() and retry. Throws
  // std::invalid_argument for a request it cannot express (too large).
  // `last` false keeps the request from the backend (req_prod unpublished)
  // until a later submit() with `last` true publishes them all at once, as
  // Linux blk-mq batches with bd->last.
  std::optional<uint64_t> submit(const BlkRequest& request, bool last = true);
  // Waits up to `timeout` for at least one completion (0: do not wait) and
  // returns every completion available.
  std::vector<BlkCompletion> poll(milliseconds timeout);
  size_t in_flight() const { return in_flight_; }
  size_t queue_depth() const;  // requests one ring holds

  // Sync convenience: submit, wait for this request's response (others that
  // complete meanwhile are kept for poll()). Throws on timeout.
  BlkCompletion execute(const BlkRequest& request);
  int16_t write(uint64_t sector, std::span<const std::byte> data);
  int16_t read(uint64_t sector, std::span<std::byte> out);
  int16_t flush();
  int16_t discard(uint64_t sector, uint32_t sectors, bool secure = false);

  // Largest data request expressible in one blkif request (sectors).
  uint32_t max_request_sectors() const;

  // Misbehaviour: sets queue q's req_prod far more than a ring ahead of
  // what it consumed, then notifies.
  void corrupt_producer(unsigned queue);
  // Misbehaviour on its own thread (see GuestMisbehaviour): floods xenstore
  // under this frontend's directory through `connection`, a second xenstore
  // connection of this guest (InProcessGuest::connect_store()). Works
  // whether connected or not.
  std::unique_ptr<XenstoreFlood> start_xenstore_flood(std::unique_ptr<xs::XenStore> connection,
                                                      XenstoreFloodConfig config = {});
  // Misbehaviour on its own thread: notifies queue q's event channel in a
  // loop, no request on the ring. Needs connect(); keeps storming (into the
  // void) after close(), until stopped.
  std::unique_ptr<EventStorm> start_event_storm(unsigned queue, EventStormConfig config = {});

  // Storms, until `stop` (run one on a thread of its own; the instance is
  // good for nothing but close() afterwards). Each returns how many events
  // or requests it produced.
  // Notifies queue q's event channel in a loop without queueing anything.
  uint64_t storm_events(unsigned queue, const std::atomic<bool>& stop);
  // Keeps queue q's ring full of valid one-page reads, a round per call:
  // fills it up to a ring past the responses published (every slot is
  // refilled as soon as its response is published; no response is read)
  // and notifies if the backend asked. Any thread, one at a time.
  uint64_t storm_requests_once(unsigned queue);

  // Protocol violations the backend committed, as Linux blkfront would log
  // them (unknown or duplicate id, wrong operation, grant still mapped at
  // response time, runaway response producer). Empty for a good backend.
  const std::vector<std::string>& violations() const { return violations_; }
  // Grants currently held (leak checks).
  uint32_t grants_held() const;
  // Times responses were found only after a whole event wait (100 ms) ran
  // out: an event the backend owed and did not send (or sent that late).
  uint64_t responses_without_event() const { return responses_without_event_; }
  // Responses whose id was not pending (answered twice, or never asked):
  // each is also a violation.
  uint64_t responses_not_pending() const { return responses_not_pending_; }
  // Responses found in another request's ring slot than their own (the
  // backend answered in completion order, not ring order). Legal.
  uint64_t responses_out_of_ring_order() const { return responses_out_of_ring_order_; }
  // Handles of the requests submitted and not (yet) answered.
  std::vector<uint64_t> unanswered() const;

 private:
  struct Shadow {
    bool in_use = false;
    uint64_t handle = 0;
    uint64_t wire_id = 0;     // the id the request carries on the ring
    uint32_t ring_index = 0;  // the ring slot the request went into
    uint8_t expected_operation = 0;
    BlkRequest::Kind kind = BlkRequest::Kind::Read;
    std::vector<uint32_t> data_pages;      // page per segment
    std::vector<ports::GrantRef> grants;   // grants to end at completion (not persistent)
    std::vector<bool> pooled;              // data page belongs to the persistent pool
    std::vector<std::pair<uint32_t, ports::GrantRef>> pool_pages;  // to give back to the pool
    std::vector<ring::Segment> segments;   // as sent (for copying reads out)
    std::vector<uint32_t> indirect_pages;
    std::vector<ports::GrantRef> indirect_grants;
    uint32_t read_bytes = 0;
    // Back to "unused", keeping the vectors' memory: a shadow is reused for
    // every request of its id, and the frontend is part of what benchmarks
    // measure.
    void reset();
  };
  struct Queue {
    RingMapping mapping;
    std::vector<uint32_t> ring_pages;
    std::vector<ports::GrantRef> ring_grants;
    std::unique_ptr<ring::FrontRing> ring;
    ports::EvtchnPort port = 0;
    std::vector<Shadow> shadow;
    std::vector<uint32_t> free_ids;
    uint64_t id_generation = 0;  // unique_ids: bumped at every submission
    // Persistent grants, per ring like Linux: granted read-write once, kept
    // for the life of the connection, reused for reads and writes alike.
    std::vector<std::pair<uint32_t, ports::GrantRef>> pool_free;
    std::vector<std::pair<uint32_t, ports::GrantRef>> pool_all;
  };

  std::string read_backend(const std::string& key);
  std::optional<uint64_t> read_backend_uint(const std::string& key);
  void write_state(xs::XenbusState state);
  void setup_queues();
  void teardown_queues();
  void publish_rings();
  void read_disk_properties();
  unsigned pick_queue(const BlkRequest& request);
  void end_request_grants(Queue& queue, Shadow& shadow);
  std::pair<uint32_t, ports::GrantRef> data_page(Queue& queue, bool writable_by_backend, bool pooled);
  void drain_responses(std::vector<BlkCompletion>& out);
  void process_queue(unsigned q, std::vector<BlkCompletion>& out);
  bool wait_for_events(milliseconds timeout);
  void violation(std::string message);

  xs::XenStore& xs_;
  sim::SimGuestMemory& memory_;
  std::shared_ptr<sim::SimDomainLink> link_;
  std::unique_ptr<sim::SimGuestEvents> events_;
  uint32_t devid_;
  FrontendConfig config_;
  std::string frontend_;
  std::string backend_;
  std::string watch_token_;
  BackendInfo info_;
  bool connected_ = false;
  ring::Abi abi_ = ring::Abi::Native;
  std::vector<Queue> queues_;
  unsigned next_queue_ = 0;
  uint64_t next_handle_ = 1;
  size_t in_flight_ = 0;
  std::deque<BlkCompletion> stash_;
  std::vector<std::byte> indirect_image_;  // scratch for encoding indirect pages
  std::vector<std::string> violations_;
  bool waited_out_ = false;  // the last event wait ran its whole cap out
  uint64_t responses_without_event_ = 0;
  uint64_t responses_not_pending_ = 0;
  uint64_t responses_out_of_ring_order_ = 0;
  struct RequestStorm {
    unsigned queue = 0;
    uint32_t prod = 0;
    std::vector<std::byte> image;  // the read request, encoded
  };
  std::optional<RequestStorm> request_storm_;
};

}  // namespace xbb::frontend
