#include "tests/sim/guestmem/SimHypervisor.hpp"

#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <spdlog/spdlog.h>

#include "tests/sim/guestmem/SimEventChannel.hpp"
#include "tests/sim/guestmem/SimGrantTable.hpp"

namespace xbb::sim {
namespace {

storage::UniqueFd duplicate(int fd, const char* what) {
  storage::UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy)
    throw std::invalid_argument(std::string("sim hypervisor: bad ") + what + " fd: " +
                                std::strerror(errno));
  return copy;
}

// The in-process guest's way to publish ports: straight into its domain.
class LocalDomainLink final : public SimDomainLink {
 public:
  explicit LocalDomainLink(std::shared_ptr<SimDomain> domain) : domain_(std::move(domain)) {}
  DomId domid() const override { return domain_->id(); }
  int offer_port(EvtchnPort port, DomId remote, int to_remote, int from_remote) override {
    if (!domain_->alive()) return -ESRCH;
    storage::UniqueFd a(::fcntl(to_remote, F_DUPFD_CLOEXEC, 0));
    storage::UniqueFd b(::fcntl(from_remote, F_DUPFD_CLOEXEC, 0));
    if (!a || !b) return -errno;
    return domain_->offer_port(port, remote, std::move(a), std::move(b));
  }
  int close_port(EvtchnPort port) override { return domain_->close_port(port); }

 private:
  std::shared_ptr<SimDomain> domain_;
};

}  // namespace

SimHypervisor::SimHypervisor(DomId self) : registry_(std::make_shared<SimDomainRegistry>(self)) {}

SimHypervisor::~SimHypervisor() = default;

std::shared_ptr<SimDomainLink> SimHypervisor::add_domain(DomId id, int memory_fd, int grant_table_fd) {
  auto domain = SimDomain::create(id, duplicate(memory_fd, "guest memory"),
                                  duplicate(grant_table_fd, "grant table"));
  registry_->add(domain);
  return std::make_shared<LocalDomainLink>(std::move(domain));
}

std::shared_ptr<SimDomainLink> SimHypervisor::add_domain(const SimGuestMemory& memory) {
  return add_domain(memory.domid(), memory.memory_fd(), memory.grant_table_fd());
}

bool SimHypervisor::remove_domain(DomId id) { return registry_->remove(id); }

void SimHypervisor::set_on_domain_gone(std::function<void(DomId)> callback) {
  registry_->set_on_gone(std::move(callback));
}

bool SimHypervisor::wait_domain_gone(DomId id, std::chrono::milliseconds timeout) {
  return registry_->wait_gone(id, timeout);
}

void SimHypervisor::listen(const std::string& socket_path) {
  broker_.reset();
  broker_ = std::make_unique<SimBroker>(registry_, socket_path);
}

void SimHypervisor::stop_listening() { broker_.reset(); }

std::unique_ptr<ports::GrantTable> SimHypervisor::open_grant_table() {
  return std::make_unique<SimGrantTable>(registry_);
}

std::unique_ptr<ports::EventChannel> SimHypervisor::open_event_channel() {
  try {
    return std::make_unique<SimEventChannel>(registry_);
  } catch (const std::system_error& e) {
    spdlog::error("sim hypervisor: cannot open an event channel handle: {}", e.what());
    errno = e.code().value();
    return nullptr;
  }
}

bool SimHypervisor::domain_exists(DomId domid) { return registry_->find(domid) != nullptr; }

}  // namespace xbb::sim
