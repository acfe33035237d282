// The XenStore port over a SimStoreServer socket, for a simulated guest (or
// daemon) running in another process. A reader thread separates replies from
// watch events, as libxenstore does, so watch_fd() becomes readable as soon
// as an event arrives even while nobody is calling into the client.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "storage/UniqueFd.hpp"
#include "tests/sim/xenstore/XsWire.hpp"
#include "xenstore/XenStore.hpp"

namespace xbb::sim {

using xs::DomId;
using xs::Permission;
using xs::TxId;
using xs::WatchEvent;

class SimStoreClient final : public xs::XenStore {
 public:
  // Connects and, for a domid other than 0, sends the sim-only handshake
  // naming the domain. Throws xs::Error when the server is unreachable or
  // refuses the handshake.
  SimStoreClient(const std::string& socket_path, DomId domid);
  ~SimStoreClient() override;
  SimStoreClient(const SimStoreClient&) = delete;
  SimStoreClient& operator=(const SimStoreClient&) = delete;

  std::optional<std::string> read(TxId tx, const std::string& path) override;
  void write(TxId tx, const std::string& path, const std::string& value) override;
  void mkdir(TxId tx, const std::string& path) override;
  void rm(TxId tx, const std::string& path) override;
  std::optional<std::vector<std::string>> directory(TxId tx, const std::string& path) override;
  std::vector<Permission> get_permissions(TxId tx, const std::string& path) override;
  void set_permissions(TxId tx, const std::string& path, const std::vector<Permission>& perms) override;

  void watch(const std::string& path, const std::string& token) override;
  void unwatch(const std::string& path, const std::string& token) override;
  int watch_fd() const override { return event_fd_.get(); }
  std::optional<WatchEvent> read_watch() override;

  TxId transaction_start() override;
  bool transaction_end(TxId tx, bool commit) override;

 private:
  // Sends one request and waits for its reply; an XS_ERROR reply is returned
  // as is (callers decide whether ENOENT is an error).
  wire::Message transact(uint32_t type, TxId tx, std::string payload);
  // Like transact, but throws xs::Error for an XS_ERROR reply.
  wire::Message request(uint32_t type, TxId tx, std::string payload, const std::string& what);
  void reader_loop();

  storage::UniqueFd sock_;
  storage::UniqueFd event_fd_;
  std::mutex request_mu_;  // one request in flight, as on a real xenstore connection
  std::mutex mu_;          // guards everything below
  std::condition_variable cv_;
  std::optional<wire::Message> reply_;
  std::deque<WatchEvent> events_;
  bool dead_ = false;
  uint32_t next_req_id_ = 1;
  std::thread reader_;
};

}  // namespace xbb::sim
