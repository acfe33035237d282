#include "tests/sim/guestmem/SimGuestConnection.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <vector>

#include "tests/sim/guestmem/BrokerProtocol.hpp"

namespace xbb::sim {
namespace {

// One request, one reply. Returns the reply's result or -errno.
int call(int socket, const broker::Request& req, std::span<const int> fds) {
  if (int rc = broker::send_record(socket, &req, sizeof req, fds); rc != 0) return rc;
  broker::Reply reply;
  std::vector<storage::UniqueFd> none;
  ssize_t n = broker::receive_record(socket, &reply, sizeof reply, none);
  if (n < 0) return static_cast<int>(n);
  if (n != static_cast<ssize_t>(sizeof reply)) return -ECONNRESET;  // hypervisor went away
  return reply.result;
}

}  // namespace

std::shared_ptr<SimGuestConnection> SimGuestConnection::connect(const std::string& socket_path,
                                                                const SimGuestMemory& memory) {
  return connect(socket_path, memory.domid(), memory.memory_fd(), memory.grant_table_fd());
}

std::shared_ptr<SimGuestConnection> SimGuestConnection::connect(const std::string& socket_path,
                                                                DomId domid, int memory_fd,
                                                                int grant_table_fd) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof addr.sun_path)
    throw std::system_error(ENAMETOOLONG, std::generic_category(),
                            "sim guest: bad broker socket path '" + socket_path + "'");
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  storage::UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!s) throw std::system_error(errno, std::generic_category(), "sim guest: socket");
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw std::system_error(errno, std::generic_category(),
                            "sim guest: connect to broker " + socket_path);
  broker::Request hello;
  hello.op = broker::Op::Hello;
  hello.domid = domid;
  const int fds[] = {memory_fd, grant_table_fd};
  if (int rc = call(s.get(), hello, fds); rc != 0)
    throw std::system_error(-rc, std::generic_category(),
                            "sim guest: hypervisor refused domain " + std::to_string(domid));
  return std::shared_ptr<SimGuestConnection>(new SimGuestConnection(std::move(s), domid));
}

int SimGuestConnection::offer_port(EvtchnPort port, DomId remote, int to_remote, int from_remote) {
  broker::Request req;
  req.op = broker::Op::OfferPort;
  req.domid = domid_;
  req.port = port;
  req.remote = remote;
  const int fds[] = {to_remote, from_remote};
  std::lock_guard lock(mutex_);
  return call(socket_.get(), req, fds);
}

int SimGuestConnection::close_port(EvtchnPort port) {
  broker::Request req;
  req.op = broker::Op::ClosePort;
  req.domid = domid_;
  req.port = port;
  std::lock_guard lock(mutex_);
  return call(socket_.get(), req, {});
}

}  // namespace xbb::sim
