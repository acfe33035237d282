#include "tests/sim/xenstore/SimStoreClient.hpp"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "xenstore/BackendPath.hpp"

namespace xbb::sim {
namespace {

using xs::Error;

std::string z(const std::string& s) { return s + '\0'; }

}  // namespace

SimStoreClient::SimStoreClient(const std::string& socket_path, DomId domid) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) throw Error(ENAMETOOLONG, "socket path " + socket_path);
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  sock_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock_) throw Error(errno, "socket");
  if (::connect(sock_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    throw Error(errno, "connect " + socket_path);
  }
  event_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!event_fd_) throw Error(errno, "eventfd");
  reader_ = std::thread([this] { reader_loop(); });
  if (domid != 0) {
    try {
      request(wire::kSimHandshake, xs::kNoTransaction, z(std::to_string(domid)), "handshake");
    } catch (...) {
      ::shutdown(sock_.get(), SHUT_RDWR);
      reader_.join();
      throw;
    }
  }
}

SimStoreClient::~SimStoreClient() {
  ::shutdown(sock_.get(), SHUT_RDWR);  // wakes the reader with EOF
  if (reader_.joinable()) reader_.join();
}

void SimStoreClient::reader_loop() {
  wire::Decoder decoder;
  char buf[4096];
  while (true) {
    const ssize_t n = ::recv(sock_.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    decoder.feed(buf, static_cast<size_t>(n));
    try {
      while (auto msg = decoder.next()) {
        std::lock_guard lock(mu_);
        if (msg->type == XS_WATCH_EVENT) {
          auto parts = wire::split_strings(msg->payload);
          if (parts.size() < 2) {
            spdlog::warn("simulated xenstore client: malformed watch event ignored");
            continue;
          }
          const bool was_empty = events_.empty();
          events_.push_back(WatchEvent{parts[0], parts[1]});
          if (was_empty) {
            const uint64_t one = 1;
            if (::write(event_fd_.get(), &one, sizeof one) < 0) {
              spdlog::warn("simulated xenstore client: eventfd: {}", std::strerror(errno));
            }
          }
        } else {
          reply_ = std::move(*msg);
          cv_.notify_all();
        }
      }
    } catch (const Error& e) {
      spdlog::error("simulated xenstore client: {}", e.what());
      break;
    }
  }
  std::lock_guard lock(mu_);
  dead_ = true;
  cv_.notify_all();
}

wire::Message SimStoreClient::transact(uint32_t type, TxId tx, std::string payload) {
  // A larger message would make the server drop the connection (as xenstored
  // does); refuse it here like libxenstore.
  if (payload.size() > XENSTORE_PAYLOAD_MAX) throw Error(E2BIG, "xenstore request too large");
  std::lock_guard serial(request_mu_);
  wire::Message req{type, 0, tx, std::move(payload)};
  {
    std::lock_guard lock(mu_);
    if (dead_) throw Error(EIO, "simulated xenstore connection closed");
    req.req_id = next_req_id_++;
    reply_.reset();
  }
  const std::string bytes = wire::encode(req);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::send(sock_.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(errno, "send to simulated xenstore");
    }
    done += static_cast<size_t>(n);
  }
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return reply_.has_value() || dead_; });
  if (!reply_) throw Error(EIO, "simulated xenstore connection closed");
  wire::Message reply = std::move(*reply_);
  reply_.reset();
  if (reply.type != XS_ERROR && reply.type != type) {
    throw Error(EIO, "simulated xenstore reply of type " + std::to_string(reply.type) + " to request " +
                         std::to_string(type));
  }
  return reply;
}

wire::Message SimStoreClient::request(uint32_t type, TxId tx, std::string payload, const std::string& what) {
  wire::Message reply = transact(type, tx, std::move(payload));
  if (reply.type == XS_ERROR) {
    auto parts = wire::split_strings(reply.payload);
    throw Error(wire::errno_from_name(parts.empty() ? "" : parts[0]), "xenstore " + what);
  }
  return reply;
}

std::optional<std::string> SimStoreClient::read(TxId tx, const std::string& path) {
  wire::Message reply = transact(XS_READ, tx, z(path));
  if (reply.type == XS_ERROR) {
    auto parts = wire::split_strings(reply.payload);
    const int err = wire::errno_from_name(parts.empty() ? "" : parts[0]);
    if (err == ENOENT) return std::nullopt;
    throw Error(err, "xenstore read " + path);
  }
  return reply.payload;
}

void SimStoreClient::write(TxId tx, const std::string& path, const std::string& value) {
  request(XS_WRITE, tx, z(path) + value, "write " + path);
}

void SimStoreClient::mkdir(TxId tx, const std::string& path) { request(XS_MKDIR, tx, z(path), "mkdir " + path); }

void SimStoreClient::rm(TxId tx, const std::string& path) {
  wire::Message reply = transact(XS_RM, tx, z(path));
  if (reply.type == XS_ERROR) {
    auto parts = wire::split_strings(reply.payload);
    const int err = wire::errno_from_name(parts.empty() ? "" : parts[0]);
    if (err != ENOENT) throw Error(err, "xenstore rm " + path);
  }
}

std::optional<std::vector<std::string>> SimStoreClient::directory(TxId tx, const std::string& path) {
  wire::Message reply = transact(XS_DIRECTORY, tx, z(path));
  if (reply.type == XS_ERROR) {
    auto parts = wire::split_strings(reply.payload);
    const int err = wire::errno_from_name(parts.empty() ? "" : parts[0]);
    if (err == ENOENT) return std::nullopt;
    throw Error(err, "xenstore directory " + path);
  }
  return wire::split_strings(reply.payload);
}

std::vector<Permission> SimStoreClient::get_permissions(TxId tx, const std::string& path) {
  wire::Message reply = request(XS_GET_PERMS, tx, z(path), "get_permissions " + path);
  std::vector<Permission> perms;
  for (const auto& s : wire::split_strings(reply.payload)) {
    auto p = wire::perm_from_string(s);
    if (!p) throw Error(EIO, "xenstore get_permissions " + path + ": malformed reply");
    perms.push_back(*p);
  }
  return perms;
}

void SimStoreClient::set_permissions(TxId tx, const std::string& path, const std::vector<Permission>& perms) {
  std::string payload = z(path);
  for (const auto& p : perms) payload += z(wire::perm_to_string(p));
  request(XS_SET_PERMS, tx, std::move(payload), "set_permissions " + path);
}

void SimStoreClient::watch(const std::string& path, const std::string& token) {
  request(XS_WATCH, xs::kNoTransaction, z(path) + z(token), "watch " + path);
}

void SimStoreClient::unwatch(const std::string& path, const std::string& token) {
  request(XS_UNWATCH, xs::kNoTransaction, z(path) + z(token), "unwatch " + path);
  // Events of this watch that were already in flight are dropped, like
  // libxenstore's XS_UNWATCH_FILTER (the server filters its own queue).
  std::lock_guard lock(mu_);
  const bool was_nonempty = !events_.empty();
  std::erase_if(events_, [&](const WatchEvent& ev) {
    if (ev.token != token) return false;
    return ev.path == path || (ev.path.size() > path.size() && ev.path.compare(0, path.size(), path) == 0 &&
                               ev.path[path.size()] == '/');
  });
  if (was_nonempty && events_.empty()) {
    uint64_t drained = 0;
    if (::read(event_fd_.get(), &drained, sizeof drained) < 0 && errno != EAGAIN) {
      spdlog::warn("simulated xenstore client: eventfd: {}", std::strerror(errno));
    }
  }
}

std::optional<WatchEvent> SimStoreClient::read_watch() {
  std::lock_guard lock(mu_);
  if (events_.empty()) return std::nullopt;
  WatchEvent ev = std::move(events_.front());
  events_.pop_front();
  if (events_.empty()) {
    uint64_t drained = 0;
    if (::read(event_fd_.get(), &drained, sizeof drained) < 0 && errno != EAGAIN) {
      spdlog::warn("simulated xenstore client: eventfd: {}", std::strerror(errno));
    }
  }
  return ev;
}

TxId SimStoreClient::transaction_start() {
  wire::Message reply = request(XS_TRANSACTION_START, xs::kNoTransaction, z(""), "transaction_start");
  auto parts = wire::split_strings(reply.payload);
  auto id = parts.empty() ? std::nullopt : xs::parse_canonical_uint(parts[0], UINT32_MAX);
  if (!id || *id == xs::kNoTransaction) throw Error(EIO, "xenstore transaction_start: malformed reply");
  return static_cast<TxId>(*id);
}

bool SimStoreClient::transaction_end(TxId tx, bool commit) {
  wire::Message reply = transact(XS_TRANSACTION_END, tx, z(commit ? "T" : "F"));
  if (reply.type == XS_ERROR) {
    auto parts = wire::split_strings(reply.payload);
    const int err = wire::errno_from_name(parts.empty() ? "" : parts[0]);
    if (commit && err == EAGAIN) return false;
    throw Error(err, "xenstore transaction_end");
  }
  return true;
}

}  // namespace xbb::sim
