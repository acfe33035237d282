#include "storage/nbd/NbdConnection.hpp"

#include <libnbd.h>
#include <poll.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace xbb::storage {

using Clock = std::chrono::steady_clock;

struct NbdConnection::Request {
  NbdPosted posted;
  NbdConnection* owner = nullptr;
  RequestList::iterator self;
  Clock::time_point deadline;
  std::unique_ptr<unsigned char[]> bounce;  // scatter-gather requests only
  bool issued = false;
  bool timed_out = false;
  unsigned refs = 0;      // commands libnbd still holds, plus one while issuing
  unsigned sent = 0;      // commands handed to libnbd
  unsigned answered = 0;  // commands the server answered (callback reached)
  int32_t error = 0;      // first failure, as -errno
};

NbdConnection::NbdConnection(NbdTarget target, NbdServerShape shape, NbdHandle connected)
    : target_(std::move(target)),
      shape_(shape),
      wakeup_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      handle_(std::move(connected)) {
  if (!wakeup_) throw StorageError(fmt::format("nbd: cannot create an eventfd: {}", std::strerror(errno)));
  if (handle_) {
    link_ = state_ = NbdLinkState::Up;
    connects_ = 1;
  }
  try {
    thread_ = std::thread([this] { run(); });
  } catch (const std::system_error& e) {
    throw StorageError(fmt::format("nbd: cannot start the I/O thread for '{}': {}", target_.uri, e.what()));
  }
}

NbdConnection::~NbdConnection() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wakeup_.get(), &one, sizeof one);
  thread_.join();
}

void NbdConnection::post(std::vector<NbdPosted>& batch) {
  if (batch.empty()) return;
  bool was_empty;
  {
    std::lock_guard lock(mutex_);
    was_empty = inbox_.empty();
    inbox_.insert(inbox_.end(), batch.begin(), batch.end());
  }
  batch.clear();
  if (was_empty) {  // otherwise the thread has a wakeup pending already
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wakeup_.get(), &one, sizeof one);
  }
}

NbdLinkState NbdConnection::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

uint64_t NbdConnection::connects() const {
  std::lock_guard lock(mutex_);
  return connects_;
}

void NbdConnection::set_state(NbdLinkState state) {
  link_ = state;
  std::lock_guard lock(mutex_);
  state_ = state;
  if (state == NbdLinkState::Up) ++connects_;
}

void NbdConnection::run() {
  std::vector<NbdPosted> batch;
  if (!handle_) start_connecting(Clock::now());
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) break;
      batch.swap(inbox_);
    }
    auto now = Clock::now();
    if (handle_ && (nbd_aio_is_dead(handle_.get()) == 1 || nbd_aio_is_closed(handle_.get()) == 1))
      go_down(death_reason(), -ENOTCONN);
    if (link_ == NbdLinkState::Down && target_.reconnect_interval.count() > 0 && now >= next_attempt_)
      start_connecting(now);
    if (link_ == NbdLinkState::Connecting && now >= connect_deadline_)
      go_down(fmt::format("connecting timed out after {} ms", target_.request_timeout.count()), -ENOTCONN);
    for (NbdPosted& posted : batch) accept(posted, now);
    batch.clear();
    expire(now);
    poll_once(Clock::now());
  }
  // Stopping: libnbd drops what is in flight when the handle closes; everything
  // else is answered too, so no queue waits for a completion that never comes.
  closing_ = true;
  handle_.reset();
  for (Request& request : requests_) request.posted.sink->deliver(request.posted.request.tag, -ECANCELED);
  requests_.clear();
  std::lock_guard lock(mutex_);
  for (const NbdPosted& posted : inbox_) posted.sink->deliver(posted.request.tag, -ECANCELED);
  inbox_.clear();
}

void NbdConnection::accept(NbdPosted posted, Clock::time_point now) {
  if (posted.request.op == IoOp::Flush && !shape_.properties.can_flush) {
    // The server keeps no volatile cache it would let us flush: nothing to do.
    posted.sink->deliver(posted.request.tag, 0);
    return;
  }
  if (link_ == NbdLinkState::Down) {
    posted.sink->deliver(posted.request.tag, -ENOTCONN);
    return;
  }
  Request& request = requests_.emplace_back();
  request.posted = posted;
  request.owner = this;
  request.self = std::prev(requests_.end());
  request.deadline = now + target_.request_timeout;
  if (link_ == NbdLinkState::Up) issue(request.self);
}

void NbdConnection::issue(RequestList::iterator it) {
  Request& request = *it;
  const IoRequest& io = request.posted.request;
  request.issued = true;
  request.refs = 1;  // ours, so a command failing synchronously cannot finish it under us
  switch (io.op) {
    case IoOp::Read:
    case IoOp::Write: {
      unsigned char* buffer;
      if (io.iovcnt == 1) {
        buffer = static_cast<unsigned char*>(io.iov[0].iov_base);  // zero-copy
      } else {
        // Scatter-gather goes through one contiguous buffer: blkif segments are
        // at most a page, and one NBD command per page would multiply the
        // per-command header, reply and server work; a page copy is cheap next
        // to a network round trip.
        request.bounce = std::make_unique_for_overwrite<unsigned char[]>(request.posted.bytes);
        buffer = request.bounce.get();
        if (io.op == IoOp::Write) {
          unsigned char* at = buffer;
          for (unsigned i = 0; i < io.iovcnt; ++i) {
            std::memcpy(at, io.iov[i].iov_base, io.iov[i].iov_len);
            at += io.iov[i].iov_len;
          }
        }
      }
      for (uint64_t done = 0; done < request.posted.bytes; done += shape_.max_io_bytes) {
        const uint64_t length = std::min<uint64_t>(shape_.max_io_bytes, request.posted.bytes - done);
        if (!issue_chunk(request, io.offset + done, length, buffer + done)) break;
      }
      break;
    }
    case IoOp::Flush:
      issue_chunk(request, 0, 0, nullptr);
      break;
    case IoOp::Discard:
    case IoOp::SecureDiscard:  // refused by validation (never advertised); kept for completeness
      for (uint64_t done = 0; done < request.posted.bytes; done += shape_.max_trim_bytes) {
        const uint64_t length = std::min<uint64_t>(shape_.max_trim_bytes, request.posted.bytes - done);
        if (!issue_chunk(request, io.offset + done, length, nullptr)) break;
      }
      break;
  }
  release(request);
}

bool NbdConnection::issue_chunk(Request& request, uint64_t offset, uint64_t length, unsigned char* buffer) {
  nbd_handle* h = handle_.get();
  ++request.refs;
  ++request.sent;
  // libnbd calls on_command_freed exactly once, even when the call below fails
  // or the handle is closed with the command still in flight.
  const nbd_completion_callback done{.callback = on_command_done, .user_data = &request, .free = on_command_freed};
  int64_t cookie = -1;
  switch (request.posted.request.op) {
    case IoOp::Read:
      cookie = nbd_aio_pread(h, buffer, length, offset, done, 0);
      break;
    case IoOp::Write:
      cookie = nbd_aio_pwrite(h, buffer, length, offset, done, 0);
      break;
    case IoOp::Flush:
      cookie = nbd_aio_flush(h, done, 0);
      break;
    case IoOp::Discard:
    case IoOp::SecureDiscard:
      cookie = nbd_aio_trim(h, length, offset, done, 0);
      break;
  }
  if (cookie != -1) return true;
  const int error = nbd_get_errno();
  spdlog::debug("nbd: '{}': cannot send a command: {}", target_.uri, nbd_last_error());
  // A connection that died under us is refused by libnbd with EINVAL ("invalid
  // state"); to the caller that is a lost connection, as for requests in flight.
  const bool lost = nbd_aio_is_dead(h) == 1 || nbd_aio_is_closed(h) == 1;
  if (request.error == 0) request.error = lost ? -ENOTCONN : (error > 0 ? -error : -EIO);
  return false;
}

int NbdConnection::on_command_done(void* user_data, int* error) {
  auto* request = static_cast<Request*>(user_data);
  ++request->answered;
  if (*error != 0 && request->error == 0) request->error = -*error;
  return 1;  // retire the command now; on_command_freed follows
}

void NbdConnection::on_command_freed(void* user_data) {
  auto* request = static_cast<Request*>(user_data);
  request->owner->release(*request);
}

void NbdConnection::release(Request& request) {
  if (--request.refs > 0) return;
  int32_t result;
  if (request.timed_out) {
    result = -ETIMEDOUT;
  } else if (request.error != 0) {
    result = request.error;
  } else if (request.answered < request.sent) {
    result = closing_ ? -ECANCELED : -EIO;  // dropped with the connection
  } else if (request.posted.request.op == IoOp::Read || request.posted.request.op == IoOp::Write) {
    result = static_cast<int32_t>(request.posted.bytes);
    if (request.posted.request.op == IoOp::Read && request.bounce) {
      const unsigned char* at = request.bounce.get();
      for (unsigned i = 0; i < request.posted.request.iovcnt; ++i) {
        const iovec& v = request.posted.request.iov[i];
        std::memcpy(v.iov_base, at, v.iov_len);
        at += v.iov_len;
      }
    }
  } else {
    result = 0;
  }
  finish(request, result);
}

void NbdConnection::finish(Request& request, int32_t result) {
  request.posted.sink->deliver(request.posted.request.tag, result);
  requests_.erase(request.self);
}

void NbdConnection::start_connecting(Clock::time_point now) {
  try {
    handle_ = make_nbd_handle();
  } catch (const StorageError& e) {
    go_down(e.what(), -ENOTCONN);
    return;
  }
  if (nbd_aio_connect_uri(handle_.get(), target_.uri.c_str()) == -1) {
    go_down(fmt::format("cannot connect: {}", nbd_last_error()), -ENOTCONN);
    return;
  }
  connect_deadline_ = now + target_.request_timeout;
  set_state(NbdLinkState::Connecting);
  check_connected();  // a refused unix socket fails at once: don't hold requests for it
}

void NbdConnection::check_connected() {
  nbd_handle* h = handle_.get();
  if (nbd_aio_is_connecting(h) == 1) return;
  if (nbd_aio_is_ready(h) != 1) {
    go_down(fmt::format("cannot connect: {}", nbd_last_error()), -ENOTCONN);
    return;
  }
  const Properties& want = shape_.properties;
  try {
    const Properties got = describe_nbd_server(h, target_.uri, want.read_only).properties;
    if (got.size_bytes != want.size_bytes) {
      go_down(fmt::format("the export is now {} bytes instead of {}; not serving it", got.size_bytes, want.size_bytes),
              -ENOTCONN);
      return;
    }
    if (got.logical_block_size > want.logical_block_size) {
      go_down(fmt::format("the export's minimum block size is now {} instead of {}; not serving it",
                          got.logical_block_size, want.logical_block_size),
              -ENOTCONN);
      return;
    }
    if (got.read_only && !want.read_only) {
      go_down("the export is now read-only under a writable disk; not serving it", -ENOTCONN);
      return;
    }
  } catch (const StorageError& e) {
    go_down(e.what(), -ENOTCONN);
    return;
  }
  if (connects() > 0) spdlog::info("nbd: '{}': reconnected", target_.uri);
  outage_reported_ = false;
  set_state(NbdLinkState::Up);
  for (auto it = requests_.begin(); it != requests_.end();) {
    auto next = std::next(it);  // issue() may finish (and erase) the request
    if (!it->issued) issue(it);
    it = next;
  }
}

void NbdConnection::go_down(const std::string& why, int held_result) {
  if (!outage_reported_) {  // once per outage: a dead server is retried often
    outage_reported_ = true;
    spdlog::warn("nbd: '{}': {}; {}", target_.uri, why,
                 target_.reconnect_interval.count() > 0
                     ? fmt::format("reconnecting every {} ms", target_.reconnect_interval.count())
                     : std::string("not reconnecting (reconnect=off)"));
  } else {
    spdlog::debug("nbd: '{}': reconnect failed: {}", target_.uri, why);
  }
  handle_.reset();  // libnbd drops every command in flight: each is answered through on_command_freed
  for (Request& request : requests_) request.posted.sink->deliver(request.posted.request.tag, held_result);
  requests_.clear();
  next_attempt_ = Clock::now() + target_.reconnect_interval;
  set_state(NbdLinkState::Down);
}

std::string NbdConnection::death_reason() {
  const char* error = nbd_get_error();
  return error ? fmt::format("the connection died ({})", error) : std::string("the connection died");
}

void NbdConnection::expire(Clock::time_point now) {
  bool reset = false;
  for (auto it = requests_.begin(); it != requests_.end() && it->deadline <= now;) {
    if (!it->issued) {
      it->posted.sink->deliver(it->posted.request.tag, -ETIMEDOUT);
      it = requests_.erase(it);
      continue;
    }
    if (!it->timed_out) reset = true;
    it->timed_out = true;
    ++it;
  }
  if (reset)
    go_down(fmt::format("a request got no answer within {} ms; resetting the connection", target_.request_timeout.count()),
            -ENOTCONN);
}

void NbdConnection::poll_once(Clock::time_point now) {
  pollfd fds[2] = {{wakeup_.get(), POLLIN, 0}, {-1, 0, 0}};
  nfds_t count = 1;
  unsigned direction = 0;
  if (handle_) {
    const int fd = nbd_aio_get_fd(handle_.get());
    direction = nbd_aio_get_direction(handle_.get());
    if (fd >= 0) {
      fds[1].fd = fd;
      fds[1].events = static_cast<short>(((direction & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                                         ((direction & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0));
      count = 2;
    }
  }

  std::optional<Clock::time_point> wake_at;
  auto earliest = [&](Clock::time_point t) { wake_at = wake_at ? std::min(*wake_at, t) : t; };
  if (!requests_.empty()) earliest(requests_.front().deadline);
  if (link_ == NbdLinkState::Connecting) earliest(connect_deadline_);
  if (link_ == NbdLinkState::Down && target_.reconnect_interval.count() > 0) earliest(next_attempt_);
  int timeout_ms = -1;
  if (wake_at) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(*wake_at - now).count();
    timeout_ms = static_cast<int>(std::clamp<int64_t>(left, 0, 60'000));
  }

  if (::poll(fds, count, timeout_ms) <= 0) return;  // timeout, or EINTR: the loop re-checks everything
  if (fds[0].revents & POLLIN) {
    uint64_t value;
    [[maybe_unused]] ssize_t n = ::read(wakeup_.get(), &value, sizeof value);
  }
  if (count < 2 || fds[1].revents == 0) return;

  nbd_handle* h = handle_.get();
  const short revents = fds[1].revents;
  const bool failed = (revents & (POLLHUP | POLLERR)) != 0;
  bool ok = true;
  if ((revents & POLLIN || failed) && (direction & LIBNBD_AIO_DIRECTION_READ)) ok = nbd_aio_notify_read(h) != -1;
  if (ok && (revents & POLLOUT || failed) && (direction & LIBNBD_AIO_DIRECTION_WRITE))
    ok = nbd_aio_notify_write(h) != -1;
  if (!ok || nbd_aio_is_dead(h) == 1 || nbd_aio_is_closed(h) == 1) {
    go_down(death_reason(), -ENOTCONN);
  } else if (failed) {
    go_down("the server hung up", -ENOTCONN);
  } else if (link_ == NbdLinkState::Connecting) {
    check_connected();
  }
}

}  // namespace xbb::storage
