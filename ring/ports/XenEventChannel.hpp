// ports::EventChannel over libxenevtchn (/dev/xen/evtchn): the production
// adapter. One handle per worker thread; its fd goes into the worker's poll.
#pragma once

#include <memory>

#include "ring/ports/GuestMemory.hpp"

struct xenevtchn_handle;

namespace xbb::ports {

class XenEventChannel final : public EventChannel {
 public:
  // Opens /dev/xen/evtchn in non-blocking mode. Throws std::system_error
  // (with errno) when there is no usable Xen.
  static std::unique_ptr<XenEventChannel> open();
  ~XenEventChannel() override;  // closing the device unbinds every port
  XenEventChannel(const XenEventChannel&) = delete;
  XenEventChannel& operator=(const XenEventChannel&) = delete;

  std::optional<EvtchnPort> bind_interdomain(DomId domid, EvtchnPort remote_port) override;
  // These return 0 or -errno.
  int unbind(EvtchnPort local_port) override;
  int notify(EvtchnPort local_port) override;
  int fd() const override { return fd_; }
  std::optional<EvtchnPort> pending() override;
  int unmask(EvtchnPort local_port) override;

 private:
  XenEventChannel(xenevtchn_handle* handle, int fd) : handle_(handle), fd_(fd) {}

  xenevtchn_handle* handle_;
  int fd_;
};

}  // namespace xbb::ports
