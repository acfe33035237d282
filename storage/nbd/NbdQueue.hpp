// The StorageQueue of an NbdStorage. Lives on one worker thread: submit()
// validates and batches, flush_submissions() posts the batch to the
// connection's I/O thread, and completions come back from that thread into a
// small locked list that reap() drains (the eventfd says when to look).
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "storage/CompletionSignal.hpp"
#include "storage/nbd/NbdConnection.hpp"
#include "storage/Storage.hpp"

namespace xbb::storage {

class NbdQueue final : public StorageQueue, private NbdCompletionSink {
 public:
  static constexpr unsigned kMaxDepth = 65536;

  // `connection` is this queue's own (multi-conn) or shared with the other
  // queues. Throws StorageError for a depth outside 1..kMaxDepth.
  NbdQueue(std::shared_ptr<NbdConnection> connection, const Properties& properties, unsigned depth);
  // Waits until every posted request is answered, as the connection may still
  // be writing into the caller's buffers; that is bounded by the request
  // timeout. Submitted but never flushed requests are dropped.
  ~NbdQueue() override;

  int submit(const IoRequest& request) override;
  void flush_submissions() override;
  int completion_fd() const override { return signal_.fd(); }
  size_t reap(std::span<IoCompletion> out) override;
  unsigned capacity() const override { return depth_; }
  unsigned in_flight() const override { return in_flight_; }

  NbdConnection& connection() { return *connection_; }

 private:
  void deliver(uint64_t tag, int32_t result) override;  // on the I/O thread

  std::shared_ptr<NbdConnection> connection_;
  const Properties properties_;
  const unsigned depth_;
  CompletionSignal signal_;
  unsigned in_flight_ = 0;         // submitted and not yet reaped
  uint64_t posted_ = 0;            // handed to the connection
  std::vector<NbdPosted> batch_;   // submitted, not yet flushed

  std::mutex mutex_;               // guards done_, head_, delivered_, signalled_
  std::condition_variable all_delivered_;
  std::vector<IoCompletion> done_;
  size_t head_ = 0;
  uint64_t delivered_ = 0;
  bool signalled_ = false;
};

}  // namespace xbb::storage
