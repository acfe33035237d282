#include "backend/engine/StorageStack.hpp"

#include <spdlog/spdlog.h>

#include "storage/snapshot/CowOriginRegistry.hpp"

namespace xbb::backend {
namespace {

// Lets a decorator that owns its inner storage sit on a shared one.
class SharedStorage final : public storage::Storage {
 public:
  explicit SharedStorage(std::shared_ptr<storage::Storage> inner) : inner_(std::move(inner)) {}
  const storage::Properties& properties() const override { return inner_->properties(); }
  std::string describe() const override { return inner_->describe(); }
  std::optional<uint64_t> current_size() const override { return inner_->current_size(); }
  bool same_data_for_every_open() const override { return inner_->same_data_for_every_open(); }
  std::unique_ptr<storage::StorageQueue> open_queue(unsigned depth) override { return inner_->open_queue(depth); }

 private:
  std::shared_ptr<storage::Storage> inner_;
};

}  // namespace

StorageStack build_storage_stack(std::unique_ptr<storage::Storage> opened, bool fault_injection,
                                 const std::vector<std::string>& snapshot_stores, bool fresh_origin) {
  StorageStack stack;
  const std::string identity = opened->describe();
  bool created = true;
  auto& registry = storage::OriginRegistry::instance();
  if (!opened->same_data_for_every_open()) {
    // Two disks on "ram:16M" are two stores: nothing to share or register.
    stack.origin = storage::CowOriginStorage::create(std::move(opened));
  } else if (fresh_origin) {
    stack.origin = storage::CowOriginStorage::create(std::move(opened));
    registry.set_origin_of_image(identity, stack.origin);
  } else {
    stack.origin = registry.origin_of_image(
        identity, [&opened] { return storage::CowOriginStorage::create(std::move(opened)); }, created);
  }
  if (!created) {
    // Still alive for a snapshot served from it: this image keeps that
    // origin (and its attached stores); the descriptor just opened goes.
    spdlog::info("{}: served through the origin its snapshots still use", identity);
    opened.reset();
  }
  stack.top = stack.origin;
  if (fault_injection) {
    auto fault = std::make_shared<storage::FaultInjectionStorage>(std::make_unique<SharedStorage>(stack.origin),
                                                                  storage::FaultSettings{});
    stack.fault = fault.get();
    stack.top = std::move(fault);
  }
  for (const auto& store : created ? snapshot_stores : std::vector<std::string>{}) {
    try {
      stack.origin->attach_snapshot(store);
    } catch (const std::exception& e) {
      stack.attach_errors.push_back(store + ": " + e.what());
    }
  }
  return stack;
}

}  // namespace xbb::backend
