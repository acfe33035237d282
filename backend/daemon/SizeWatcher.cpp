#include "backend/daemon/SizeWatcher.hpp"

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include <spdlog/spdlog.h>

namespace xbb::backend {

struct SizeWatcher::State {
  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;
  std::optional<std::vector<Disk>> collected;  // handed over by the control thread
};

SizeWatcher::SizeWatcher(std::shared_ptr<PostBox> post_box, std::chrono::milliseconds interval, Collect collect,
                         Seen seen)
    : state_(std::make_shared<State>()) {
  std::thread([state = state_, post_box, interval, collect = std::move(collect), seen = std::move(seen)] {
    for (;;) {
      {
        std::unique_lock lock(state->mutex);
        if (state->wake.wait_for(lock, interval, [&] { return state->stop; })) return;
        state->collected.reset();
      }
      post_box->post([state, collect] {
        auto disks = collect();
        std::lock_guard lock(state->mutex);
        state->collected = std::move(disks);
        state->wake.notify_all();
      });
      std::vector<Disk> disks;
      {
        std::unique_lock lock(state->mutex);
        state->wake.wait(lock, [&] { return state->stop || state->collected.has_value(); });
        if (state->stop) return;
        disks = std::move(*state->collected);
        state->collected.reset();
      }
      for (const auto& disk : disks) {
        std::optional<uint64_t> bytes;
        if (auto storage = disk.storage.lock()) {
          try {
            bytes = storage->current_size();
          } catch (const std::exception& e) {
            spdlog::debug("size watcher: {}: {}", storage->describe(), e.what());
          }
        }
        if (bytes && *bytes != disk.known_bytes) {
          post_box->post([seen, instance = disk.instance, size = *bytes] { seen(instance, size); });
        }
      }
    }
  }).detach();
}

SizeWatcher::~SizeWatcher() {
  std::lock_guard lock(state_->mutex);
  state_->stop = true;
  state_->wake.notify_all();
}

}  // namespace xbb::backend
