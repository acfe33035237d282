// One NBD connection and the I/O thread that drives it.
//
// libnbd's asynchronous API needs someone to poll its socket; that is this
// thread, so the engine's worker only ever calls submit/reap on its queue.
// The thread polls the libnbd fd (in the direction libnbd asks for), a wakeup
// eventfd and the earliest deadline, and delivers each finished request to the
// NbdCompletionSink (the queue) that posted it.
//
// Life of the connection:
//   Connecting  requests are held until it is up, fails, or they time out
//   Up          requests become NBD commands at once
//   Down        requests fail at once with -ENOTCONN; every reconnect
//               interval (if enabled) a new connection is attempted
// When the connection dies (socket hang-up, libnbd reports the handle dead or
// a notify fails), the handle is closed, which makes libnbd drop every command
// still in flight: each of those requests completes with -EIO. A request that
// outlives the timeout completes with -ETIMEDOUT and resets the connection, as
// the server is presumed wedged (libnbd cannot cancel a single command, and
// the caller's buffers must not be written after completion). Nothing parks
// forever: every request has a deadline.
//
// A reconnect is refused (and retried later) when the export changed size,
// raised its minimum block size, or became read-only under a writable disk.
//
// Requests cross from the worker to this thread through a mutex-protected
// inbox: one lock per flush_submissions() batch, off the engine's hot path
// (the network round trip dwarfs it).
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "storage/nbd/NbdHandle.hpp"
#include "storage/nbd/NbdTarget.hpp"
#include "storage/Storage.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::storage {

// Receives completions on the connection's I/O thread.
class NbdCompletionSink {
 public:
  virtual void deliver(uint64_t tag, int32_t result) = 0;

 protected:
  ~NbdCompletionSink() = default;
};

// A validated request on its way to the connection.
struct NbdPosted {
  NbdCompletionSink* sink = nullptr;
  IoRequest request;
  uint64_t bytes = 0;  // Read/Write: sum of the iovecs; Discard: length
};

enum class NbdLinkState : uint8_t { Connecting, Up, Down };

class NbdConnection {
 public:
  // Takes over `connected` when given (already connected and checked against
  // `shape`), else starts connecting on its thread. Throws StorageError if the
  // thread or its eventfd cannot be created.
  NbdConnection(NbdTarget target, NbdServerShape shape, NbdHandle connected);
  // Stops the thread; requests not yet answered complete with -ECANCELED.
  ~NbdConnection();
  NbdConnection(const NbdConnection&) = delete;
  NbdConnection& operator=(const NbdConnection&) = delete;

  // Thread-safe; one lock and at most one eventfd write per batch.
  void post(std::vector<NbdPosted>& batch);

  // For tests and statistics: the state last seen by the I/O thread.
  NbdLinkState state() const;
  uint64_t connects() const;  // successful connections so far, the first included

 private:
  struct Request;
  using RequestList = std::list<Request>;

  void run();
  void take_inbox(std::vector<NbdPosted>& into);
  void accept(NbdPosted posted, std::chrono::steady_clock::time_point now);
  void issue(RequestList::iterator it);
  bool issue_chunk(Request& request, uint64_t offset, uint64_t length, unsigned char* buffer);
  void release(Request& request);
  void finish(Request& request, int32_t result);
  void start_connecting(std::chrono::steady_clock::time_point now);
  void check_connected();
  void go_down(const std::string& why, int held_result);
  static std::string death_reason();
  void expire(std::chrono::steady_clock::time_point now);
  void poll_once(std::chrono::steady_clock::time_point now);
  void set_state(NbdLinkState state);

  static int on_command_done(void* user_data, int* error);
  static void on_command_freed(void* user_data);

  const NbdTarget target_;
  const NbdServerShape shape_;
  UniqueFd wakeup_;

  mutable std::mutex mutex_;                 // guards inbox_, stopping_, state_, connects_
  std::vector<NbdPosted> inbox_;
  bool stopping_ = false;
  NbdLinkState state_ = NbdLinkState::Connecting;
  uint64_t connects_ = 0;

  // Owned by the I/O thread.
  NbdHandle handle_;
  NbdLinkState link_ = NbdLinkState::Connecting;
  std::chrono::steady_clock::time_point connect_deadline_{};
  std::chrono::steady_clock::time_point next_attempt_{};
  bool outage_reported_ = false;             // warned about the current outage
  bool closing_ = false;                     // handle closed on purpose: unanswered -> -ECANCELED
  RequestList requests_;                     // arrival order, so deadlines ascend

  std::thread thread_;                       // last: starts after everything above exists
};

}  // namespace xbb::storage
