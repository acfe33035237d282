// The control socket's framing (ControlServer): one JSON object per line in,
// one per line out, whatever the client sends and however it ends.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "backend/daemon/ControlServer.hpp"

namespace xbb::backend {
namespace {

// A server driven by hand on the test's thread, and one client connection.
class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = "/tmp/xbb-control-test-" + std::to_string(::getpid());
    server_ = std::make_unique<ControlServer>(path_, [](const nlohmann::json& request) {
      // Echoes the command back inside the answer, as error messages do.
      return nlohmann::json{{"ok", false}, {"error", "unknown command " + request.value("command", std::string())}};
    });
    client_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    ASSERT_EQ(::connect(client_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  }

  void send(const std::string& bytes) {
    ASSERT_EQ(::send(client_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL), ssize_t(bytes.size()));
  }
  // Lets the server accept and read whatever is there.
  void serve() {
    server_->on_ready(server_->listen_fd(), watch_);
    const std::set<int> fds = connections_;
    for (int fd : fds) server_->on_ready(fd, watch_);
  }
  // Every answer line until the server closes the connection.
  std::vector<nlohmann::json> answers() {
    std::string all;
    char chunk[4096];
    for (ssize_t n; (n = ::recv(client_.get(), chunk, sizeof chunk, 0)) > 0;) all.append(chunk, size_t(n));
    std::vector<nlohmann::json> out;
    size_t pos = 0;
    for (size_t nl; (nl = all.find('\n', pos)) != std::string::npos; pos = nl + 1)
      out.push_back(nlohmann::json::parse(all.substr(pos, nl - pos)));
    return out;
  }

  std::string path_;
  std::unique_ptr<ControlServer> server_;
  storage::UniqueFd client_;
  std::set<int> connections_;
  std::function<void(int, bool)> watch_ = [this](int fd, bool add) {
    if (add) {
      connections_.insert(fd);
    } else {
      connections_.erase(fd);
    }
  };
};

// Found by fuzz_control: a request line that is not UTF-8 made the parse
// error's message (which quotes the bytes read) impossible to serialise, and
// the exception left ControlServer and ended xbbd's control loop, taking
// every disk's control thread with it. The same held for any answer quoting
// such bytes (a target path in Latin-1, say).
TEST_F(ControlServerTest, AnswersALineThatIsNotUtf8) {
  send("\xff\xfe\n{\"command\": \"list\"}\n");
  ASSERT_NO_THROW(serve());
  ::shutdown(client_.get(), SHUT_WR);
  serve();
  auto got = answers();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_FALSE(got[0]["ok"].get<bool>());
  EXPECT_NE(got[0]["error"].get<std::string>().find("malformed"), std::string::npos);
  EXPECT_EQ(got[1]["error"], "unknown command list");
}

// Found by fuzz_control: requests that arrived together with the client's
// end of stream (`printf '...\n' | socat - UNIX:...`, nc -N) were dropped
// unanswered: the server saw the close first and never parsed them.
TEST_F(ControlServerTest, AnswersRequestsSentBeforeTheClientShutDownItsSide) {
  send("{\"command\": \"a\"}\n{\"command\": \"b\"}\n{\"command\": \"unterminated\"}");
  ::shutdown(client_.get(), SHUT_WR);
  serve();
  EXPECT_TRUE(connections_.empty()) << "the server keeps a connection whose client is done";
  auto got = answers();
  ASSERT_EQ(got.size(), 2u) << "one answer per complete line";
  EXPECT_EQ(got[0]["error"], "unknown command a");
  EXPECT_EQ(got[1]["error"], "unknown command b");
}

}  // namespace
}  // namespace xbb::backend
