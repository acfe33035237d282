// The whole daemon in a simulated host: backend::Daemon on its own thread
// with a dom0 xenstore connection, the simulated hypervisor, and storage
// opened from the target string ("ram:16M", a temp file path, or
// "failing:<target>" for a FailingStorage driven by `failures`).
#pragma once

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <memory>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "backend/daemon/Daemon.hpp"
#include "tests/backend/FailingStorage.hpp"
#include "tests/frontend/SimWorld.hpp"

namespace xbb::backendtest {

using namespace std::chrono_literals;

backend::DaemonOptions default_options();

class DaemonHarness {
 public:
  explicit DaemonHarness(backend::DaemonOptions options = default_options());
  ~DaemonHarness();

  frontend::SimWorld& world() { return world_; }
  frontend::SimToolstack& toolstack() { return world_.toolstack(); }
  backend::Daemon& daemon() { return *daemon_; }
  const std::shared_ptr<FailurePlan>& failures() { return failures_; }

  // Daemon::handle_command on the control thread (as the socket would).
  nlohmann::json command(const nlohmann::json& request);
  // The "stats" entry of one device ("D/N"), or null.
  nlohmann::json device_stats(const std::string& device);
  size_t device_count();

  // Stops the daemon (request_stop) and joins it; returns run()'s status.
  int stop();
  bool running() const { return thread_.joinable(); }

  // Properties forced on failing storage (e.g. to advertise discard).
  std::optional<storage::Properties> failing_properties;

  // "hang:<target>" opens block until release_hung_opens() (a dead NBD
  // server, a hung NFS mount); how many are blocked right now.
  void release_hung_opens();
  size_t hung_opens() const;

 private:
  frontend::SimWorld world_;
  std::unique_ptr<xs::XenStore> dom0_;
  std::shared_ptr<FailurePlan> failures_ = std::make_shared<FailurePlan>();
  struct HangLatch {
    std::mutex mutex;
    std::condition_variable released_cv;
    bool released = false;
    size_t waiting = 0;
  };
  std::shared_ptr<HangLatch> hang_ = std::make_shared<HangLatch>();
  std::unique_ptr<backend::Daemon> daemon_;
  std::thread thread_;
  int status_ = -1;
};

// A temporary file of `bytes` bytes, removed on destruction.
class TempFile {
 public:
  explicit TempFile(uint64_t bytes);
  ~TempFile();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace xbb::backendtest
