// One ring, one thread. The worker owns everything its ring touches: the
// mapped shared ring, its event channel, its grant handle, a storage queue,
// bounce buffers and persistent grants. It consumes requests, validates them,
// merges contiguous ones into request lists (FreeBSD blkback's reqlist),
// moves data by batched grant copy or on persistent mappings, submits to
// storage and answers every request, by default in ring order so that the
// ring can be adopted after a crash (Tunables::ordered_responses). Nothing on
// this path takes a lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "backend/engine/BarrierSequence.hpp"
#include "backend/engine/BufferPool.hpp"
#include "backend/engine/EventBackoff.hpp"
#include "backend/engine/IdlePolicy.hpp"
#include "backend/engine/PersistentGrants.hpp"
#include "backend/engine/ResponsePublisher.hpp"
#include "backend/engine/Statistics.hpp"
#include "backend/engine/Tunables.hpp"
#include "backend/engine/WorkerMailbox.hpp"
#include "ring/ports/GuestMemory.hpp"
#include "ring/protocol/BackRing.hpp"
#include "ring/protocol/Request.hpp"
#include "ring/protocol/Validator.hpp"
#include "storage/Storage.hpp"

namespace xbb::backend {

// Why a worker stopped or needs the control thread.
enum class QueueEvent { Stopped, StorageGone, RingHalted, Failed };

struct QueueSetup {
  unsigned index = 0;
  std::string name;                       // for logs: "dom3/51712/q0"
  ports::DomId frontend = 0;
  std::unique_ptr<ports::GrantTable> grants;
  std::unique_ptr<ports::EventChannel> events;
  ports::EvtchnPort port = 0;             // our bound local port
  bool port_bound = true;
  void* ring_address = nullptr;           // mapped through `grants`, unmapped by the worker
  size_t ring_pages = 0;
  ring::Abi abi = ring::Abi::Native;
  std::unique_ptr<storage::StorageQueue> storage;
  const storage::Properties* storage_properties = nullptr;
  ring::DiskGeometry geometry;
  bool persistent_grants = false;
  size_t persistent_grant_capacity = 1056;  // Linux blkback's default per ring
  size_t bounce_pages = 2048;
  Tunables tunables;
  std::function<void(unsigned queue, QueueEvent)> notify_control;  // called from the worker thread
};

class QueueWorker {
 public:
  explicit QueueWorker(QueueSetup setup);
  ~QueueWorker();  // stops (drains) and joins
  QueueWorker(const QueueWorker&) = delete;
  QueueWorker& operator=(const QueueWorker&) = delete;

  void start();
  // Asks the worker to stop consuming the ring, finish and answer what is in
  // flight, then exit; QueueEvent::Stopped follows. Non-blocking.
  void request_stop();
  bool stopped() const { return stopped_.load(std::memory_order_acquire); }
  // Why the worker gave up (QueueEvent::Failed); empty otherwise. Read once stopped().
  const std::string& failure() const { return failure_; }
  void join();
  void set_tunables(const Tunables& tunables);
  const QueueStats& stats() const { return stats_; }
  size_t mapped_pages() const;

 private:
  struct Slot;
  struct List;

  // The run loop and what it calls once per pass.
  void run();
  void release_guest_resources();
  void handle_commands();
  void handle_event_channel();
  void acknowledge_event();
  void unmask_event();
  uint64_t wake_at() const;  // when a sleep must end (held notification, deferred unmask)
  // One pass over everything that can move without waiting; returns how many
  // requests and completions it handled.
  unsigned service(bool storage_signalled);
  bool can_consume() const;
  bool idle() const;
  void apply_tunables(const Tunables& tunables);
  // Switches between ring and completion order once nothing is owed; true
  // when it did.
  bool change_order_when_quiet();

  // The request path, in the order a request takes it.
  unsigned consume_ring();
  bool start_request(uint32_t slot);
  void read_indirect_segments(Slot& slot, ring::Rejection& rejection);
  bool prepare_segments(Slot& slot);
  void add_read_write(uint32_t slot);
  void dispatch_open_list(bool forced);
  bool copy_list(List& list, ports::GrantCopySegment::Direction direction);
  bool copy_in(List& list);
  void submit_list(uint32_t list);
  void submit_singletons(uint32_t list);
  unsigned reap_storage();
  void complete_list(uint32_t list, int result);
  void copy_out(List& list);
  void respond(uint32_t slot, int16_t status);
  void release_segments(Slot& slot);
  int16_t status_for(int storage_result);
  void purge_persistent_grants();
  uint32_t alloc_list(storage::IoOp op);
  void free_list(uint32_t list);

  // Barriers and flushes with data (BarrierSequence says what comes next;
  // these do it).
  void start_barrier(uint32_t slot, const BarrierSequence::Plan& plan);
  void run_barrier(BarrierSequence::Step step);

  QueueSetup setup_;
  ring::BackRing ring_;
  BufferPool bounce_;
  std::unique_ptr<PersistentGrants> persistent_;
  QueueStats stats_;
  Tunables tunables_;
  std::unique_ptr<std::byte[]> indirect_buffer_;

  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  std::vector<List> lists_;
  std::vector<uint32_t> free_lists_;
  uint32_t open_list_ = UINT32_MAX;
  uint32_t parked_slot_ = UINT32_MAX;     // consumed but waiting for buffers or storage depth
  uint32_t barrier_list_ = UINT32_MAX;
  BarrierSequence barrier_;
  uint32_t lists_in_storage_ = 0;
  uint32_t flushes_seen_ = 0;
  bool ring_halted_ = false;
  bool ordered_ = true;                 // answers in ring order (tunable ordered_responses, once quiet)
  bool order_change_pending_ = false;   // the tunable differs from ordered_: hold the ring until quiet
  uint64_t last_request_ns_ = 0;  // when the last request was consumed
  std::vector<ports::GrantCopySegment> copy_batch_;
  std::vector<storage::IoCompletion> completions_;

  WorkerMailbox mailbox_;
  ResponsePublisher publisher_;
  IdlePolicy idle_;
  uint32_t block_sector_mask_;  // sectors per logical block - 1
  EventBackoff event_backoff_;
  std::optional<ports::EvtchnPort> masked_port_;  // taken by pending(), not yet unmasked
  uint64_t unmask_at_ns_ = 0;                     // a deferred unmask is due then (0: none)
  uint64_t next_purge_ns_ = 0;                    // persistent-grant purges at most this often
  bool stopping_ = false;                       // a stop was taken from the mailbox
  std::atomic<bool> stopped_{false};
  std::string failure_;                  // written by the worker before stopped_
  std::atomic<size_t> mapped_pages_{0};  // ring + persistent grants, for statistics
  std::thread thread_;
};

}  // namespace xbb::backend
