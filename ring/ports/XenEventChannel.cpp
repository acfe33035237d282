#include "ring/ports/XenEventChannel.hpp"

#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

// The Xen library headers lack extern "C" guards.
extern "C" {
#include <xenevtchn.h>
}

#include "ring/ports/XenError.hpp"

namespace xbb::ports {

std::unique_ptr<XenEventChannel> XenEventChannel::open() {
  xenevtchn_handle* handle = xenevtchn_open(nullptr, 0);
  if (!handle) throw xen_error(errno, "cannot open the Xen event channel device (xenevtchn_open)");
  int fd = xenevtchn_fd(handle);
  // libxenevtchn opens the device blocking, and xenevtchn_pending() reads it:
  // the contract (and the worker loop) needs pending() never to block.
  int flags = fd >= 0 ? ::fcntl(fd, F_GETFL) : -1;
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    int error = fd >= 0 ? errno : EBADF;
    xenevtchn_close(handle);
    throw xen_error(error, "cannot make the event channel device non-blocking");
  }
  return std::unique_ptr<XenEventChannel>(new XenEventChannel(handle, fd));
}

XenEventChannel::~XenEventChannel() { xenevtchn_close(handle_); }

std::optional<EvtchnPort> XenEventChannel::bind_interdomain(DomId domid, EvtchnPort remote_port) {
  xenevtchn_port_or_error_t port = xenevtchn_bind_interdomain(handle_, domid, remote_port);
  if (port < 0) {
    int error = errno;
    spdlog::debug("xen evtchn: bind to domain {} port {} failed: {}", domid, remote_port,
                  std::strerror(error));
    errno = error;
    return std::nullopt;
  }
  return static_cast<EvtchnPort>(port);
}

int XenEventChannel::unbind(EvtchnPort local_port) {
  return xenevtchn_unbind(handle_, local_port) == 0 ? 0 : -errno;
}

int XenEventChannel::notify(EvtchnPort local_port) {
  return xenevtchn_notify(handle_, local_port) == 0 ? 0 : -errno;
}

std::optional<EvtchnPort> XenEventChannel::pending() {
  xenevtchn_port_or_error_t port = xenevtchn_pending(handle_);
  if (port < 0) {
    if (errno != EAGAIN && errno != EINTR)
      spdlog::error("xen evtchn: reading pending ports failed: {}", std::strerror(errno));
    return std::nullopt;
  }
  return static_cast<EvtchnPort>(port);
}

int XenEventChannel::unmask(EvtchnPort local_port) {
  return xenevtchn_unmask(handle_, local_port) == 0 ? 0 : -errno;
}

}  // namespace xbb::ports
