#include "tests/sim/guestmem/SimBroker.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <list>
#include <stdexcept>
#include <system_error>
#include <vector>

#include <spdlog/spdlog.h>

#include "tests/sim/guestmem/BrokerProtocol.hpp"

namespace xbb::sim {

struct SimBroker::Client {
  storage::UniqueFd socket;
  std::shared_ptr<SimDomain> domain;  // set by Hello
};

SimBroker::SimBroker(std::shared_ptr<SimDomainRegistry> registry, std::string socket_path)
    : registry_(std::move(registry)), path_(std::move(socket_path)) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.empty() || path_.size() >= sizeof addr.sun_path)
    throw std::system_error(ENAMETOOLONG, std::generic_category(),
                            "sim broker: bad socket path '" + path_ + "'");
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  listener_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!listener_) throw std::system_error(errno, std::generic_category(), "sim broker: socket");
  ::unlink(path_.c_str());
  if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener_.get(), 16) != 0)
    throw std::system_error(errno, std::generic_category(), "sim broker: listen on " + path_);
  stop_.reset(::eventfd(0, EFD_CLOEXEC));
  if (!stop_) throw std::system_error(errno, std::generic_category(), "sim broker: eventfd");
  thread_ = std::thread([this] { serve(); });
}

SimBroker::~SimBroker() {
  const uint64_t one = 1;
  (void)!::write(stop_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  ::unlink(path_.c_str());
}

void SimBroker::serve() {
  std::list<Client> clients;
  auto drop = [&](std::list<Client>::iterator it) {
    if (it->domain) {
      spdlog::info("sim broker: domain {} disconnected; destroying it", it->domain->id());
      registry_->remove(it->domain->id(), it->domain.get());
    }
    return clients.erase(it);
  };
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({stop_.get(), POLLIN, 0});
    fds.push_back({listener_.get(), POLLIN, 0});
    for (const Client& c : clients) fds.push_back({c.socket.get(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("sim broker: poll: {}", std::strerror(errno));
      break;
    }
    if (fds[0].revents) break;
    if (fds[1].revents & POLLIN) {
      storage::UniqueFd s(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (s) clients.push_back(Client{std::move(s), nullptr});
    }
    // Clients accepted just now are not in `fds`; they are polled next round.
    auto it = clients.begin();
    for (size_t i = 2; i < fds.size(); ++i) {
      if (fds[i].revents == 0) {
        ++it;
        continue;
      }
      it = handle_request(*it) ? std::next(it) : drop(it);
    }
  }
  while (!clients.empty()) drop(clients.begin());
}

bool SimBroker::handle_request(Client& client) {
  broker::Request req;
  std::vector<storage::UniqueFd> fds;
  ssize_t n = broker::receive_record(client.socket.get(), &req, sizeof req, fds);
  if (n == 0) return false;  // the guest is gone
  if (n < 0 && n != -EMSGSIZE) {
    spdlog::debug("sim broker: receive: {}", std::strerror(static_cast<int>(-n)));
    return false;
  }
  broker::Reply reply;
  if (n != static_cast<ssize_t>(sizeof req) || req.magic != broker::kMagic) {
    spdlog::warn("sim broker: malformed request ({} bytes); closing the connection", n);
    return false;
  }
  switch (req.op) {
    case broker::Op::Hello:
      if (client.domain || fds.size() != 2 || req.domid > UINT16_MAX) {
        reply.result = client.domain ? -EALREADY : -EINVAL;
        break;
      }
      try {
        auto domain = SimDomain::create(static_cast<DomId>(req.domid), std::move(fds[0]),
                                        std::move(fds[1]));
        reply.result = -EEXIST;  // if add() refuses the id
        registry_->add(domain);
        client.domain = std::move(domain);
        reply.result = 0;
      } catch (const std::invalid_argument& e) {
        spdlog::warn("sim broker: refusing domain {}: {}", req.domid, e.what());
        if (reply.result == 0) reply.result = -EINVAL;
      }
      break;
    case broker::Op::OfferPort:
      if (!client.domain || fds.size() != 2 || req.remote > UINT16_MAX) {
        reply.result = client.domain ? -EINVAL : -EPROTO;
        break;
      }
      reply.result = client.domain->offer_port(req.port, static_cast<DomId>(req.remote),
                                               std::move(fds[0]), std::move(fds[1]));
      break;
    case broker::Op::ClosePort:
      reply.result = client.domain ? client.domain->close_port(req.port) : -EPROTO;
      break;
    default:
      reply.result = -EOPNOTSUPP;
  }
  return broker::send_record(client.socket.get(), &reply, sizeof reply, {}) == 0;
}

}  // namespace xbb::sim
