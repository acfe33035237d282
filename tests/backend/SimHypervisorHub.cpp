#include "tests/backend/SimHypervisorHub.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <spdlog/spdlog.h>

#include "tests/sim/guestmem/BrokerProtocol.hpp"
#include "tests/sim/guestmem/SimHypervisor.hpp"

namespace xbb::backendtest {

using storage::UniqueFd;
using sim::broker::receive_record;
using sim::broker::send_record;

namespace {

constexpr uint32_t kHubMagic = 0x78626268;  // "xbbh"
enum class HubOp : uint32_t { AddDomain = 1, RemoveDomain = 2, OfferPort = 3, ClosePort = 4, Synced = 5 };

sockaddr_un address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    throw std::system_error(ENAMETOOLONG, std::generic_category(), "sim hub: bad socket path '" + path + "'");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

storage::UniqueFd duplicate(int fd) { return storage::UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0)); }

struct HubMessage {
  uint32_t magic = kHubMagic;
  HubOp op = HubOp::Synced;
  uint32_t domid = 0;
  uint32_t port = 0;
  uint32_t remote = 0;
};

}  // namespace

// The guest's side: its ports go through the hub to every process.
class SimHypervisorHub::Link final : public sim::SimDomainLink {
 public:
  Link(SimHypervisorHub& hub, ports::DomId domid) : hub_(hub), domid_(domid) {}
  ports::DomId domid() const override { return domid_; }
  int offer_port(ports::EvtchnPort port, ports::DomId remote, int to_remote, int from_remote) override {
    return hub_.offer_port(domid_, port, remote, to_remote, from_remote);
  }
  int close_port(ports::EvtchnPort port) override { return hub_.close_port(domid_, port); }

 private:
  SimHypervisorHub& hub_;
  ports::DomId domid_;
};

SimHypervisorHub::SimHypervisorHub(std::string socket_path) : path_(std::move(socket_path)) {
  const auto addr = address(path_);
  listener_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  stop_.reset(::eventfd(0, EFD_CLOEXEC));
  if (!listener_ || !stop_) throw std::system_error(errno, std::generic_category(), "sim hub: socket");
  ::unlink(path_.c_str());
  if (::bind(listener_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener_.get(), 16) != 0)
    throw std::system_error(errno, std::generic_category(), "sim hub: listen on " + path_);
  thread_ = std::thread([this] { accept_loop(); });
}

SimHypervisorHub::~SimHypervisorHub() {
  const uint64_t one = 1;
  (void)!::write(stop_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  ::unlink(path_.c_str());
}

void SimHypervisorHub::accept_loop() {
  for (;;) {
    pollfd fds[2] = {{stop_.get(), POLLIN, 0}, {listener_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents) return;
    storage::UniqueFd peer(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!peer) continue;
    // A process that stops answering is dropped rather than hanging the guests.
    const timeval tv{5, 0};
    ::setsockopt(peer.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::lock_guard lock(mutex_);
    if (send_snapshot(peer.get())) peers_.push_back(std::move(peer));
  }
}

namespace {

// Sends one message and waits for the process's answer (0 or -errno).
int exchange(int peer, const void* message, size_t size, std::span<const int> fds) {
  if (int rc = send_record(peer, message, size, fds); rc != 0) return rc;
  int32_t result = 0;
  std::vector<storage::UniqueFd> none;
  const ssize_t n = receive_record(peer, &result, sizeof result, none);
  if (n != static_cast<ssize_t>(sizeof result)) return n < 0 ? static_cast<int>(n) : -EPIPE;
  return result;
}

}  // namespace

bool SimHypervisorHub::send_snapshot(int peer) {
  for (auto& [domid, domain] : domains_) {
    HubMessage add{kHubMagic, HubOp::AddDomain, domid, 0, 0};
    const int fds[] = {domain.memory.get(), domain.grant_table.get()};
    if (exchange(peer, &add, sizeof add, fds) != 0) return false;
    for (auto& [number, port] : domain.ports) {
      HubMessage offer{kHubMagic, HubOp::OfferPort, domid, number, port.remote};
      const int port_fds[] = {port.to_remote.get(), port.from_remote.get()};
      if (exchange(peer, &offer, sizeof offer, port_fds) != 0) return false;
    }
  }
  HubMessage synced{};
  return exchange(peer, &synced, sizeof synced, {}) == 0;
}

void SimHypervisorHub::broadcast(uint32_t op, ports::DomId domid, uint32_t port, uint32_t remote, std::vector<int> fds) {
  const HubMessage message{kHubMagic, static_cast<HubOp>(op), domid, port, remote};
  for (auto it = peers_.begin(); it != peers_.end();) {
    const int rc = exchange(it->get(), &message, sizeof message, fds);
    // A process gone (killed) is simply forgotten; one that refuses is a bug to see.
    if (rc != 0 && rc != -EPIPE && rc != -ECONNRESET)
      spdlog::warn("sim hub: a backend process refused op {}: {}", static_cast<uint32_t>(message.op), std::strerror(-rc));
    it = rc == 0 ? std::next(it) : peers_.erase(it);
  }
}

std::shared_ptr<sim::SimDomainLink> SimHypervisorHub::add_domain(const sim::SimGuestMemory& memory) {
  std::lock_guard lock(mutex_);
  Domain domain;
  domain.memory = duplicate(memory.memory_fd());
  domain.grant_table = duplicate(memory.grant_table_fd());
  if (!domain.memory || !domain.grant_table) throw std::system_error(errno, std::generic_category(), "sim hub: dup");
  if (!domains_.emplace(memory.domid(), std::move(domain)).second)
    throw std::invalid_argument("sim hub: domain " + std::to_string(memory.domid()) + " exists");
  auto& added = domains_.at(memory.domid());
  broadcast(static_cast<uint32_t>(HubOp::AddDomain), memory.domid(), 0, 0, {added.memory.get(), added.grant_table.get()});
  return std::make_shared<Link>(*this, memory.domid());
}

void SimHypervisorHub::remove_domain(ports::DomId domid) {
  std::lock_guard lock(mutex_);
  if (domains_.erase(domid) == 0) return;
  broadcast(static_cast<uint32_t>(HubOp::RemoveDomain), domid, 0, 0, {});
}

int SimHypervisorHub::offer_port(ports::DomId domid, ports::EvtchnPort port, ports::DomId remote, int to_remote,
                                 int from_remote) {
  std::lock_guard lock(mutex_);
  auto it = domains_.find(domid);
  if (it == domains_.end()) return -ESRCH;
  if (it->second.ports.count(port)) return -EEXIST;
  Port offered{remote, duplicate(to_remote), duplicate(from_remote)};
  if (!offered.to_remote || !offered.from_remote) return -errno;
  auto& stored = it->second.ports[port] = std::move(offered);
  broadcast(static_cast<uint32_t>(HubOp::OfferPort), domid, port, remote, {stored.to_remote.get(), stored.from_remote.get()});
  return 0;
}

int SimHypervisorHub::close_port(ports::DomId domid, ports::EvtchnPort port) {
  std::lock_guard lock(mutex_);
  auto it = domains_.find(domid);
  if (it == domains_.end()) return -ESRCH;
  if (it->second.ports.erase(port) == 0) return -ENOENT;
  broadcast(static_cast<uint32_t>(HubOp::ClosePort), domid, port, 0, {});
  return 0;
}

size_t SimHypervisorHub::processes() const {
  std::lock_guard lock(mutex_);
  return peers_.size();
}

// ---- the backend process's side ----

namespace {

// A SimHypervisor kept equal to the hub's view by a thread applying its messages.
class HubMirror final : public ports::Hypervisor {
 public:
  explicit HubMirror(const std::string& socket_path) {
    const auto addr = address(socket_path);
    socket_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    stop_.reset(::eventfd(0, EFD_CLOEXEC));
    if (!socket_ || !stop_ ||
        ::connect(socket_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
      throw std::runtime_error("sim hub: cannot join " + socket_path + ": " + std::strerror(errno));
    thread_ = std::thread([this] { serve(); });
    std::unique_lock lock(mutex_);
    if (!synced_changed_.wait_for(lock, std::chrono::seconds(10), [this] { return synced_ || ended_; }) || !synced_) {
      lock.unlock();
      shutdown();
      throw std::runtime_error("sim hub: " + socket_path + " sent no snapshot");
    }
  }
  ~HubMirror() override { shutdown(); }

  std::unique_ptr<ports::GrantTable> open_grant_table() override { return hypervisor_.open_grant_table(); }
  std::unique_ptr<ports::EventChannel> open_event_channel() override { return hypervisor_.open_event_channel(); }
  bool domain_exists(ports::DomId domid) override { return hypervisor_.domain_exists(domid); }

 private:
  void shutdown() {
    const uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof one);
    if (thread_.joinable()) thread_.join();
  }

  void serve() {
    for (;;) {
      pollfd fds[2] = {{stop_.get(), POLLIN, 0}, {socket_.get(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0 && errno != EINTR) break;
      if (fds[0].revents) break;
      if (!fds[1].revents) continue;
      HubMessage m{};
      std::vector<storage::UniqueFd> fds_in;
      const ssize_t n = receive_record(socket_.get(), &m, sizeof m, fds_in);
      if (n != static_cast<ssize_t>(sizeof m) || m.magic != kHubMagic) break;  // the hub is gone
      const int32_t result = apply(m, fds_in);
      if (send_record(socket_.get(), &result, sizeof result, {}) != 0) break;
    }
    std::lock_guard lock(mutex_);
    ended_ = true;
    synced_changed_.notify_all();
  }

  int32_t apply(const HubMessage& m, std::vector<storage::UniqueFd>& fds) {
    const auto domid = static_cast<ports::DomId>(m.domid);
    try {
      switch (m.op) {
        case HubOp::AddDomain:
          if (fds.size() != 2) return -EINVAL;
          links_[domid] = hypervisor_.add_domain(domid, fds[0].get(), fds[1].get());
          return 0;
        case HubOp::RemoveDomain:
          links_.erase(domid);
          return hypervisor_.remove_domain(domid) ? 0 : -ESRCH;
        case HubOp::OfferPort: {
          auto it = links_.find(domid);
          if (it == links_.end() || fds.size() != 2) return -ESRCH;
          return it->second->offer_port(m.port, static_cast<ports::DomId>(m.remote), fds[0].get(), fds[1].get());
        }
        case HubOp::ClosePort: {
          auto it = links_.find(domid);
          return it == links_.end() ? -ESRCH : it->second->close_port(m.port);
        }
        case HubOp::Synced: {
          std::lock_guard lock(mutex_);
          synced_ = true;
          synced_changed_.notify_all();
          return 0;
        }
      }
    } catch (const std::exception& e) {
      spdlog::error("sim hub mirror: {}", e.what());
      return -EINVAL;
    }
    return -EOPNOTSUPP;
  }

  sim::SimHypervisor hypervisor_{0};
  std::map<ports::DomId, std::shared_ptr<sim::SimDomainLink>> links_;  // serve() thread only
  storage::UniqueFd socket_, stop_;
  std::mutex mutex_;
  std::condition_variable synced_changed_;
  bool synced_ = false, ended_ = false;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<ports::Hypervisor> join_hub(const std::string& socket_path) {
  return std::make_unique<HubMirror>(socket_path);
}

}  // namespace xbb::backendtest
