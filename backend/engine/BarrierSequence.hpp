// A write ordered by cache flushes, as a sequence of storage steps:
//
// - a write barrier (BLKIF_OP_WRITE_BARRIER): every earlier request
//   finishes, the cache is flushed, the barrier's data (if any) is written,
//   the cache is flushed again, then the barrier is answered. Linux blkback
//   drains and writes with REQ_PREFLUSH; the flush after the write is ours,
//   so that an answered barrier is on stable storage whatever the storage's
//   FUA support.
// - a flush carrying data (BLKIF_OP_FLUSH_DISKCACHE with segments): the
//   cache is flushed, then the data written, as blkback's REQ_PREFLUSH write
//   does; nothing is drained (a flush covers the writes already answered).
//
// Pure logic: the queue worker submits each step and reports how it ended;
// this only says what comes next. Owned by one queue worker.
#pragma once

#include <cstdint>

namespace xbb::backend {

class BarrierSequence {
 public:
  enum class Step : uint8_t {
    Wait,    // nothing to do until earlier requests have left the storage
    Flush,   // submit a cache flush
    Write,   // submit the barrier's data
    Answer,  // done: answer the barrier with result()
  };

  struct Plan {
    bool drain = true;         // wait for every earlier request to leave the storage
    bool has_data = false;     // there are segments to write
    bool flush_before = true;  // flush before writing (false: no cache, or flushing disabled)
    bool flush_after = true;   // and after
  };
  // A barrier: drains, flushes around its data.
  static constexpr Plan barrier(bool has_data, bool flush) { return {true, has_data, flush, flush}; }
  // A flush with data: flushes, then writes.
  static constexpr Plan flushed_write(bool flush) { return {false, true, flush, false}; }

  // Starts a sequence; returns its first step (Wait: call drained() once
  // nothing earlier is in the storage).
  Step begin(const Plan& plan) {
    plan_ = plan;
    result_ = 0;
    phase_ = Phase::Draining;
    return plan.drain ? Step::Wait : drained();
  }

  // A barrier is in progress: nothing after it may be consumed.
  bool active() const { return phase_ != Phase::None; }
  // Waiting for earlier requests to leave the storage.
  bool draining() const { return phase_ == Phase::Draining; }

  // Every earlier request has left the storage: the first step.
  Step drained() {
    if (phase_ != Phase::Draining) return Step::Wait;
    if (plan_.flush_before) {
      phase_ = Phase::PreFlush;
      return Step::Flush;
    }
    return start_write();
  }

  // The step submitted last finished with `result` (< 0: -errno).
  Step finished(int result) {
    switch (phase_) {
      case Phase::PreFlush:
        return result < 0 ? answer(result) : start_write();
      case Phase::Write:
        if (result < 0) return answer(result);
        if (!plan_.flush_after) return answer(0);
        phase_ = Phase::PostFlush;
        return Step::Flush;
      case Phase::PostFlush:
        return answer(result < 0 ? result : 0);
      case Phase::None:
      case Phase::Draining:
        break;
    }
    return Step::Wait;
  }

  // With Step::Answer: 0, or the -errno of the step that failed.
  int result() const { return result_; }

 private:
  enum class Phase : uint8_t { None, Draining, PreFlush, Write, PostFlush };

  Step start_write() {
    if (!plan_.has_data) return answer(0);
    phase_ = Phase::Write;
    return Step::Write;
  }
  Step answer(int result) {
    phase_ = Phase::None;
    result_ = result;
    return Step::Answer;
  }

  Phase phase_ = Phase::None;
  Plan plan_;
  int result_ = 0;
};

}  // namespace xbb::backend
