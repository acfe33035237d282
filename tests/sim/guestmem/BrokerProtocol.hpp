// The simulated hypervisor's broker protocol: how a guest in another process
// hands over its memory and event channel eventfds. A SOCK_SEQPACKET unix
// socket; each request is one fixed-size record with its fds attached
// (SCM_RIGHTS), answered by one BrokerReply. Only the control path crosses
// the socket: data then flows through the shared memfds and eventfds.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <vector>

#include "storage/UniqueFd.hpp"

namespace xbb::sim::broker {

inline constexpr uint32_t kMagic = 0x78626267;  // "xbbg"

enum class Op : uint32_t {
  Hello = 1,      // domid; fds: guest memory, grant table. Must come first, once.
  OfferPort = 2,  // port, remote; fds: to_remote, from_remote eventfds
  ClosePort = 3,  // port
};

struct Request {
  uint32_t magic = kMagic;
  Op op = Op::Hello;
  uint32_t domid = 0;
  uint32_t port = 0;
  uint32_t remote = 0;
};

struct Reply {
  int32_t result = 0;  // 0 or -errno
};

inline constexpr size_t kMaxFds = 2;

// Sends one record with `fds` attached. Returns 0 or -errno.
int send_record(int socket, const void* data, size_t size, std::span<const int> fds);
// Receives one record into `data` (at most `size` bytes) and the fds attached
// to it. Returns the record's length, 0 at end of stream, or -errno.
// Truncated records or surplus fds are reported as -EMSGSIZE (fds closed).
ssize_t receive_record(int socket, void* data, size_t size, std::vector<storage::UniqueFd>& fds);

}  // namespace xbb::sim::broker
