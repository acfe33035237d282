#include "tests/sim/guestmem/BrokerProtocol.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace xbb::sim::broker {

int send_record(int socket, const void* data, size_t size, std::span<const int> fds) {
  if (fds.size() > kMaxFds) return -EINVAL;
  iovec iov{const_cast<void*>(data), size};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n) == size ? 0 : -EMSGSIZE;
    if (errno != EINTR) return -errno;
  }
}

ssize_t receive_record(int socket, void* data, size_t size, std::vector<storage::UniqueFd>& fds) {
  fds.clear();
  iovec iov{data, size};
  // Room for more fds than we accept, so a sender that attaches too many is
  // seen (and its fds closed) rather than silently truncated.
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (kMaxFds + 6))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || fds.size() > kMaxFds) {
    fds.clear();
    return -EMSGSIZE;
  }
  return n;
}

}  // namespace xbb::sim::broker
