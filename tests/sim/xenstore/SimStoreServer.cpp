#include "tests/sim/xenstore/SimStoreServer.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>

#include "tests/sim/xenstore/XsWire.hpp"
#include "xenstore/BackendPath.hpp"

namespace xbb::sim {
namespace {

using xs::Error;

const std::string kOk("OK\0", 3);

std::string nul_terminated(const std::string& s) { return s + '\0'; }

const std::string& arg(const std::vector<std::string>& args, size_t i) {
  if (i >= args.size()) throw Error(EINVAL, "missing argument");
  return args[i];
}

bool send_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

struct SimStoreServer::Client {
  storage::UniqueFd sock;
  std::optional<SimStore::ConnId> conn;
  wire::Decoder decoder;
  bool closed = false;
};

SimStoreServer::SimStoreServer(std::shared_ptr<SimStore> store, std::string socket_path)
    : store_(std::move(store)), socket_path_(std::move(socket_path)) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof addr.sun_path) throw Error(ENAMETOOLONG, "socket path " + socket_path_);
  std::memcpy(addr.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
  listen_fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listen_fd_) throw Error(errno, "socket");
  ::unlink(socket_path_.c_str());
  if (::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    throw Error(errno, "bind " + socket_path_);
  }
  if (::listen(listen_fd_.get(), 64) < 0) throw Error(errno, "listen " + socket_path_);
  stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd_) throw Error(errno, "eventfd");
}

SimStoreServer::~SimStoreServer() {
  stop();
  ::unlink(socket_path_.c_str());
}

void SimStoreServer::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { run(); });
}

void SimStoreServer::stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  if (::write(stop_fd_.get(), &one, sizeof one) < 0) {
    spdlog::error("simulated xenstore server: cannot signal stop: {}", std::strerror(errno));
  }
  thread_.join();
}

namespace {

// Executes one request for a connected client and returns the reply.
wire::Message dispatch(SimStore& store, SimStore::ConnId conn, const wire::Message& req) {
  wire::Message reply{req.type, req.req_id, req.tx_id, kOk};
  const auto args = wire::split_strings(req.payload);
  const TxId tx = req.tx_id;
  switch (req.type) {
    case XS_READ: {
      auto value = store.read(conn, tx, arg(args, 0));
      if (!value) throw Error(ENOENT, "read");
      reply.payload = *value;
      break;
    }
    case XS_WRITE: {
      // The value is raw bytes after the path's NUL and may itself hold NULs.
      const size_t nul = req.payload.find('\0');
      if (nul == std::string::npos) throw Error(EINVAL, "write without value separator");
      store.write(conn, tx, req.payload.substr(0, nul), req.payload.substr(nul + 1));
      break;
    }
    case XS_MKDIR: store.mkdir(conn, tx, arg(args, 0)); break;
    case XS_RM: store.rm(conn, tx, arg(args, 0)); break;
    case XS_DIRECTORY: {
      auto names = store.directory(conn, tx, arg(args, 0));
      if (!names) throw Error(ENOENT, "directory");
      reply.payload.clear();
      for (const auto& n : *names) reply.payload += nul_terminated(n);
      break;
    }
    case XS_GET_PERMS: {
      reply.payload.clear();
      for (const auto& p : store.get_permissions(conn, tx, arg(args, 0))) {
        reply.payload += nul_terminated(wire::perm_to_string(p));
      }
      break;
    }
    case XS_SET_PERMS: {
      std::vector<Permission> perms;
      for (size_t i = 1; i < args.size(); ++i) {
        auto p = wire::perm_from_string(args[i]);
        if (!p) throw Error(EINVAL, "bad permission string");
        perms.push_back(*p);
      }
      store.set_permissions(conn, tx, arg(args, 0), perms);
      break;
    }
    case XS_WATCH: store.watch(conn, arg(args, 0), arg(args, 1)); break;
    case XS_UNWATCH: store.unwatch(conn, arg(args, 0), arg(args, 1)); break;
    case XS_TRANSACTION_START:
      if (tx != xs::kNoTransaction) throw Error(EBUSY, "nested transaction");
      reply.payload = nul_terminated(std::to_string(store.transaction_start(conn)));
      break;
    case XS_TRANSACTION_END: {
      const std::string& how = arg(args, 0);
      if (how != "T" && how != "F") throw Error(EINVAL, "transaction end argument");
      if (!store.transaction_end(conn, tx, how == "T")) throw Error(EAGAIN, "transaction conflict");
      reply.tx_id = 0;
      break;
    }
    case XS_GET_DOMAIN_PATH: {
      auto domid = xs::parse_canonical_uint(arg(args, 0), UINT16_MAX);
      if (!domid) throw Error(EINVAL, "domid");
      reply.payload = nul_terminated("/local/domain/" + std::to_string(*domid));
      break;
    }
    default:
      throw Error(EINVAL, "unsupported request type " + std::to_string(req.type));
  }
  return reply;
}

}  // namespace

void SimStoreServer::run() {
  std::vector<std::unique_ptr<Client>> clients;
  auto flush_events = [this](Client& c) {
    if (!c.conn || c.closed) return;
    while (auto ev = store_->pop_event(*c.conn)) {
      wire::Message msg{XS_WATCH_EVENT, 0, 0, nul_terminated(ev->path) + nul_terminated(ev->token)};
      if (!send_all(c.sock.get(), wire::encode(msg))) {
        c.closed = true;
        return;
      }
    }
  };
  auto handle = [this](Client& c, const wire::Message& req) {
    wire::Message reply;
    try {
      if (!c.conn) {
        if (req.type == wire::kSimHandshake) {
          auto args = wire::split_strings(req.payload);
          auto domid = args.empty() ? std::nullopt
                                    : xs::parse_canonical_uint(args[0], xs::kDomidFirstReserved - 1);
          if (!domid) {
            spdlog::warn("simulated xenstore server: bad handshake, closing connection");
            c.closed = true;
            return;
          }
          c.conn = store_->connect(static_cast<DomId>(*domid));
          send_all(c.sock.get(), wire::encode({wire::kSimHandshake, req.req_id, 0, kOk}));
          return;
        }
        c.conn = store_->connect(0);  // a plain xenstored socket client is dom0
      }
      if (req.type == wire::kSimHandshake) throw Error(EINVAL, "handshake after the first message");
      reply = dispatch(*store_, *c.conn, req);
    } catch (const Error& e) {
      reply = wire::Message{XS_ERROR, req.req_id, req.tx_id, nul_terminated(wire::errno_name(e.code().value()))};
    } catch (const std::exception& e) {
      spdlog::error("simulated xenstore server: {}", e.what());
      reply = wire::Message{XS_ERROR, req.req_id, req.tx_id, nul_terminated("EINVAL")};
    }
    if (!send_all(c.sock.get(), wire::encode(reply))) c.closed = true;
  };

  std::vector<pollfd> fds;
  while (true) {
    fds.clear();
    fds.push_back({stop_fd_.get(), POLLIN, 0});
    fds.push_back({listen_fd_.get(), POLLIN, 0});
    for (auto& c : clients) {
      fds.push_back({c->sock.get(), POLLIN, 0});
      fds.push_back({c->conn ? store_->event_fd(*c->conn) : -1, POLLIN, 0});
    }
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("simulated xenstore server: poll: {}", std::strerror(errno));
      break;
    }
    if (fds[0].revents) break;
    if (fds[1].revents & POLLIN) {
      storage::UniqueFd sock(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (sock) {
        auto c = std::make_unique<Client>();
        c->sock = std::move(sock);
        clients.push_back(std::move(c));
      }
    }
    for (size_t i = 0; i < clients.size() && 2 + 2 * i < fds.size(); ++i) {
      Client& c = *clients[i];
      if (fds[2 + 2 * i].revents) {
        char buf[4096];
        const ssize_t n = ::recv(c.sock.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
          c.closed = true;
        } else if (n > 0) {
          c.decoder.feed(buf, static_cast<size_t>(n));
          try {
            while (!c.closed) {
              auto req = c.decoder.next();
              if (!req) break;
              handle(c, *req);
              flush_events(c);
            }
          } catch (const Error& e) {
            spdlog::warn("simulated xenstore server: {}; closing connection", e.what());
            c.closed = true;
          }
        }
      }
      flush_events(c);
    }
    for (auto it = clients.begin(); it != clients.end();) {
      if ((*it)->closed) {
        if ((*it)->conn) store_->disconnect(*(*it)->conn);
        it = clients.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& c : clients) {
    if (c->conn) store_->disconnect(*c->conn);
  }
}

}  // namespace xbb::sim
