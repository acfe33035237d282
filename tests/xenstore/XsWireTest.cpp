// The wire codec and the simulated server's handling of hostile clients: a
// broken or malicious peer must get an error or a closed connection, and the
// server must go on serving everybody else.
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include <gtest/gtest.h>

#include "tests/sim/xenstore/SimStoreClient.hpp"
#include "tests/sim/xenstore/SimStoreServer.hpp"
#include "tests/sim/xenstore/XsWire.hpp"
#include "tests/xenstore/XenstoreTestSupport.hpp"

namespace xbb::sim::wire {
namespace {

TEST(XsWire, EncodeDecodeRoundTripAcrossArbitraryChunks) {
  const Message a{XS_WRITE, 7, 3, std::string("/p\0v\0x", 6)};
  const Message b{XS_READ, 8, 0, std::string("/q\0", 3)};
  const std::string bytes = encode(a) + encode(b);
  EXPECT_EQ(bytes.size(), 2 * sizeof(xsd_sockmsg) + 9);
  Decoder d;
  std::vector<Message> got;
  for (char c : bytes) {  // one byte at a time: framing must not depend on chunking
    d.feed(&c, 1);
    while (auto m = d.next()) got.push_back(*m);
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].type, a.type);
  EXPECT_EQ(got[0].req_id, 7u);
  EXPECT_EQ(got[0].tx_id, 3u);
  EXPECT_EQ(got[0].payload, a.payload);
  EXPECT_EQ(got[1].payload, b.payload);
}

TEST(XsWire, OversizedPayloadIsAProtocolError) {
  xsd_sockmsg h{XS_READ, 1, 0, XENSTORE_PAYLOAD_MAX + 1};
  Decoder d;
  d.feed(reinterpret_cast<const char*>(&h), sizeof h);
  try {
    d.next();
    FAIL() << "no error";
  } catch (const xs::Error& e) {
    EXPECT_EQ(e.code().value(), EPROTO);
  }
}

TEST(XsWire, ErrnoNamesFollowTheXsWireTable) {
  EXPECT_EQ(errno_name(EACCES), "EACCES");
  EXPECT_EQ(errno_name(EAGAIN), "EAGAIN");
  EXPECT_EQ(errno_name(ENOENT), "ENOENT");
  EXPECT_EQ(errno_from_name("E2BIG"), E2BIG);
  EXPECT_EQ(errno_name(EBADF), "EINVAL");      // not in the table
  EXPECT_EQ(errno_from_name("EWHATEVER"), EINVAL);
  EXPECT_EQ(errno_from_name(""), EINVAL);
}

TEST(XsWire, PermissionStrings) {
  using A = xs::Permission::Access;
  EXPECT_EQ(perm_to_string({5, A::Read}), "r5");
  EXPECT_EQ(perm_to_string({0, A::None}), "n0");
  EXPECT_EQ(perm_to_string({7, A::Both}), "b7");
  EXPECT_EQ(perm_to_string({9, A::Write}), "w9");
  EXPECT_EQ(perm_from_string("b65535"), (xs::Permission{65535, A::Both}));
  for (const char* bad : {"", "r", "x5", "R5", "r-1", "r+1", "r65536", "r05", "r5 ", "rr5"}) {
    EXPECT_EQ(perm_from_string(bad), std::nullopt) << bad;
  }
}

TEST(XsWire, SplitStrings) {
  EXPECT_EQ(split_strings(std::string("a\0b\0", 4)), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(split_strings(std::string("a\0b", 3)), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(split_strings(std::string("\0", 1)), (std::vector<std::string>{""}));
  EXPECT_TRUE(split_strings("").empty());
}

// A raw socket to the server, to send what no well-behaved client would.
class RawConnection {
 public:
  explicit RawConnection(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) fd_.reset();
  }
  bool ok() const { return bool(fd_); }
  void send_bytes(const std::string& bytes) {
    ASSERT_EQ(::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }
  // The next message, or nullopt when the server closed the connection.
  std::optional<Message> receive() {
    char buf[4096];
    while (true) {
      if (auto m = decoder_.next()) return m;
      pollfd pfd{fd_.get(), POLLIN, 0};
      if (::poll(&pfd, 1, 20000) != 1) return std::nullopt;
      const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
      if (n <= 0) return std::nullopt;
      decoder_.feed(buf, static_cast<size_t>(n));
    }
  }

 private:
  storage::UniqueFd fd_;
  Decoder decoder_;
};

class HostileClients : public ::testing::Test {
 protected:
  std::shared_ptr<SimStore> store = std::make_shared<SimStore>();
  xs::testing::TempDir dir;
  SimStoreServer server{store, dir.socket()};
  void SetUp() override { server.start(); }

  // The server still answers a normal client.
  void expect_server_alive() {
    SimStoreClient probe(dir.socket(), 0);
    probe.write(xs::kNoTransaction, "/alive", "yes");
    EXPECT_EQ(probe.read(xs::kNoTransaction, "/alive"), "yes");
  }
};

TEST_F(HostileClients, OversizedHeaderClosesTheConnection) {
  RawConnection raw(dir.socket());
  ASSERT_TRUE(raw.ok());
  xsd_sockmsg h{XS_WRITE, 1, 0, 1u << 30};
  raw.send_bytes(std::string(reinterpret_cast<const char*>(&h), sizeof h));
  EXPECT_EQ(raw.receive(), std::nullopt);
  expect_server_alive();
}

TEST_F(HostileClients, UnknownRequestTypesGetEinval) {
  RawConnection raw(dir.socket());
  ASSERT_TRUE(raw.ok());
  for (uint32_t type : {uint32_t{XS_INTRODUCE}, uint32_t{XS_CONTROL}, 999u, uint32_t{XS_WATCH_EVENT}}) {
    raw.send_bytes(encode({type, 42, 0, std::string("x\0", 2)}));
    auto reply = raw.receive();
    ASSERT_TRUE(reply) << type;
    EXPECT_EQ(reply->type, uint32_t{XS_ERROR});
    EXPECT_EQ(reply->req_id, 42u);
    EXPECT_EQ(reply->payload, std::string("EINVAL\0", 7));
  }
  expect_server_alive();
}

TEST_F(HostileClients, MalformedArgumentsGetErrorsNotCrashes) {
  RawConnection raw(dir.socket());
  ASSERT_TRUE(raw.ok());
  const std::vector<Message> bad = {
      {XS_READ, 1, 0, ""},                               // no path at all
      {XS_WRITE, 2, 0, "/no-separator"},                 // no NUL between path and value
      {XS_WATCH, 3, 0, std::string("/only-path\0", 11)}, // missing token
      {XS_SET_PERMS, 4, 0, std::string("/p\0q7\0", 6)},  // bad permission letter
      {XS_TRANSACTION_END, 5, 12345, std::string("T\0", 2)},  // unknown transaction
      {XS_TRANSACTION_END, 6, 0, std::string("maybe\0", 6)},
      {XS_READ, 7, 0, std::string("relative/../..\0", 15)},
  };
  for (const auto& m : bad) {
    raw.send_bytes(encode(m));
    auto reply = raw.receive();
    ASSERT_TRUE(reply) << m.req_id;
    EXPECT_EQ(reply->type, uint32_t{XS_ERROR}) << m.req_id;
    EXPECT_EQ(reply->req_id, m.req_id);
  }
  expect_server_alive();
}

TEST_F(HostileClients, BadHandshakeClosesTheConnection) {
  for (const std::string domid : {"abc", "", "-1", "32752", "65536", "007"}) {
    RawConnection raw(dir.socket());
    ASSERT_TRUE(raw.ok());
    raw.send_bytes(encode({kSimHandshake, 1, 0, domid + '\0'}));
    EXPECT_EQ(raw.receive(), std::nullopt) << domid;
  }
  EXPECT_THROW(SimStoreClient(dir.socket(), 40000), xs::Error);
  expect_server_alive();
}

TEST_F(HostileClients, HandshakeIsOnlyValidAsTheFirstMessage) {
  RawConnection raw(dir.socket());
  ASSERT_TRUE(raw.ok());
  raw.send_bytes(encode({XS_READ, 1, 0, std::string("/\0", 2)}));  // now dom0
  ASSERT_TRUE(raw.receive());
  raw.send_bytes(encode({kSimHandshake, 2, 0, std::string("5\0", 2)}));
  auto reply = raw.receive();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->type, uint32_t{XS_ERROR});
  // Still dom0: it may write anywhere.
  raw.send_bytes(encode({XS_WRITE, 3, 0, std::string("/x\0v", 4)}));
  reply = raw.receive();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->type, uint32_t{XS_WRITE});
}

TEST_F(HostileClients, DisconnectingWithOpenTransactionsAndWatchesCleansUp) {
  {
    SimStoreClient c(dir.socket(), 0);
    c.watch("/w", "t");
    c.transaction_start();
    c.transaction_start();
  }
  // The close was sent before the probe connected, so by the time the
  // server has answered the probe's second request it has seen the EOF and
  // finished the poll round in which it drops closed connections.
  expect_server_alive();
  EXPECT_EQ(store->open_transactions(), 0u);
}

}  // namespace
}  // namespace xbb::sim::wire
