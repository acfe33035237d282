#include "tests/sim/guestmem/SimEventChannel.hpp"

#include <cerrno>

#include <spdlog/spdlog.h>

namespace xbb::sim {

SimEventChannel::SimEventChannel(std::shared_ptr<SimDomainRegistry> registry)
    : registry_(std::move(registry)) {}

SimEventChannel::~SimEventChannel() {
  // Closing the handle closes its ports, as closing /dev/xen/evtchn does.
  for (auto& [port, binding] : bindings_) binding.domain->release_port(binding.remote_port, binding.token);
}

std::optional<EvtchnPort> SimEventChannel::bind_interdomain(DomId domid, EvtchnPort remote_port) {
  std::shared_ptr<SimDomain> domain = registry_->find(domid);
  if (!domain) {
    spdlog::debug("sim evtchn: bind to domain {} port {}: no such domain", domid, remote_port);
    errno = ESRCH;
    return std::nullopt;
  }
  int error = 0;
  auto bound = domain->bind_port(remote_port, registry_->self(), &error);
  if (!bound) {
    spdlog::debug("sim evtchn: bind to domain {} port {} refused (errno {})", domid, remote_port, error);
    errno = error;
    return std::nullopt;
  }
  EvtchnPort local = registry_->next_local_port();
  uint64_t token = bound->token;
  if (int rc = ports_.add(local, std::move(bound->incoming), std::move(bound->outgoing)); rc != 0) {
    domain->release_port(remote_port, token);
    errno = -rc;
    return std::nullopt;
  }
  bindings_.emplace(local, Binding{std::move(domain), remote_port, token});
  return local;
}

int SimEventChannel::unbind(EvtchnPort local_port) {
  auto it = bindings_.find(local_port);
  if (it == bindings_.end()) return -EINVAL;
  ports_.remove(local_port);
  it->second.domain->release_port(it->second.remote_port, it->second.token);
  bindings_.erase(it);
  return 0;
}

int SimEventChannel::notify(EvtchnPort local_port) { return ports_.notify(local_port); }

}  // namespace xbb::sim
