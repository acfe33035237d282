#include "tests/backend/DaemonHarness.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <stdexcept>
#include <system_error>

#include "storage/Target.hpp"

namespace xbb::backendtest {

backend::DaemonOptions default_options() {
  backend::DaemonOptions o;
  o.vbd.max_queues = 4;
  o.vbd.max_ring_page_order = 5;
  o.vbd.max_indirect_segments = 256;
  o.vbd.persistent_grants = true;
  o.vbd.bounce_pages_per_queue = 512;
  return o;
}

DaemonHarness::DaemonHarness(backend::DaemonOptions options) : dom0_(world_.connect(0)) {
  auto failures = failures_;
  auto* self = this;
  auto hang = hang_;
  auto open = [failures, self, hang](std::string target, bool read_only) -> std::unique_ptr<storage::Storage> {
    storage::OpenOptions o;
    o.read_only = read_only;
    if (target.rfind("hang:", 0) == 0) {
      std::unique_lock lock(hang->mutex);
      ++hang->waiting;
      hang->released_cv.wait(lock, [&] { return hang->released; });
      --hang->waiting;
      target = target.substr(5);
    }
    const std::string prefix = "failing:";
    if (target.rfind(prefix, 0) == 0) {
      return std::make_unique<FailingStorage>(storage::open_target(target.substr(prefix.size()), o), failures,
                                              self->failing_properties);
    }
    return storage::open_target(target, o);
  };
  daemon_ = std::make_unique<backend::Daemon>(*dom0_, world_.hypervisor(), std::move(options), open);
  std::promise<void> ready;
  auto ready_future = ready.get_future();
  daemon_->on_ready([&ready] { ready.set_value(); });
  thread_ = std::thread([this] { status_ = daemon_->run(); });
  if (ready_future.wait_for(10s) != std::future_status::ready) throw std::runtime_error("daemon did not start");
  daemon_->on_ready(nullptr);
}

DaemonHarness::~DaemonHarness() {
  stop();
  daemon_.reset();
  release_hung_opens();  // their threads then find the daemon gone
}

void DaemonHarness::release_hung_opens() {
  std::lock_guard lock(hang_->mutex);
  hang_->released = true;
  hang_->released_cv.notify_all();
}

size_t DaemonHarness::hung_opens() const {
  std::lock_guard lock(hang_->mutex);
  return hang_->waiting;
}

int DaemonHarness::stop() {
  if (thread_.joinable()) {
    daemon_->request_stop();
    thread_.join();
  }
  return status_;
}

nlohmann::json DaemonHarness::command(const nlohmann::json& request) {
  auto done = std::make_shared<std::promise<nlohmann::json>>();
  auto future = done->get_future();
  daemon_->post([this, request, done] {
    daemon_->handle_request(request, [done](nlohmann::json answer) { done->set_value(std::move(answer)); });
  });
  if (future.wait_for(20s) != std::future_status::ready) throw std::runtime_error("daemon did not answer a command");
  return future.get();
}

nlohmann::json DaemonHarness::device_stats(const std::string& device) {
  auto answer = command({{"command", "stats"}, {"device", device}});
  if (!answer.value("ok", false) || answer["devices"].empty()) return nullptr;
  return answer["devices"][0];
}

size_t DaemonHarness::device_count() {
  auto done = std::make_shared<std::promise<size_t>>();
  auto future = done->get_future();
  daemon_->post([this, done] { done->set_value(daemon_->device_count()); });
  if (future.wait_for(10s) != std::future_status::ready) throw std::runtime_error("daemon did not answer");
  return future.get();
}

TempFile::TempFile(uint64_t bytes) {
  char name[] = "/tmp/xbb-sim-disk-XXXXXX";
  const int fd = ::mkstemp(name);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "mkstemp");
  path_ = name;
  const int rc = ::ftruncate(fd, static_cast<off_t>(bytes));
  ::close(fd);
  if (rc != 0) throw std::system_error(errno, std::generic_category(), "ftruncate");
}

TempFile::~TempFile() { ::unlink(path_.c_str()); }

}  // namespace xbb::backendtest
