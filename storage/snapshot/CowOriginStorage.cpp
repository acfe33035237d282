#include "storage/snapshot/CowOriginStorage.hpp"

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "storage/snapshot/CowOriginFence.hpp"
#include "storage/snapshot/CowOriginQueue.hpp"

namespace xbb::storage {
namespace {

// The path a store is known by: absolute and free of symlinks, so two
// spellings of one file find the same snapshot.
std::string canonical(const std::string& path) {
  char resolved[PATH_MAX];
  if (::realpath(path.c_str(), resolved) == nullptr) return path;
  return resolved;
}

constexpr uint64_t kHold = 1;

}  // namespace

std::shared_ptr<CowOriginStorage> CowOriginStorage::create(std::unique_ptr<Storage> inner) {
  if (!inner) throw StorageError("cow: no origin storage to wrap");
  return std::shared_ptr<CowOriginStorage>(new CowOriginStorage(std::move(inner)));
}

CowOriginStorage::CowOriginStorage(std::unique_ptr<Storage> inner)
    : inner_(std::move(inner)), list_(std::make_shared<const SnapshotList>()) {}

CowOriginStorage::~CowOriginStorage() {
  copier_.reset();  // finishes its jobs while everything it uses still exists
}

std::unique_ptr<StorageQueue> CowOriginStorage::open_queue(unsigned depth) {
  return std::make_unique<CowOriginQueue>(*this, inner_->open_queue(depth), depth);
}

void CowOriginStorage::register_queue(CowOriginQueue* queue) {
  // A queue opened during a hold is idle: it will see the hold before it
  // routes anything.
  std::lock_guard lock(mutex_);
  queues_.push_back(queue);
}

void CowOriginStorage::unregister_queue(CowOriginQueue* queue) {
  {
    std::lock_guard lock(mutex_);
    std::erase(queues_, queue);
  }
  acked_.notify_all();
}

std::shared_ptr<const SnapshotList> CowOriginStorage::current_list() const {
  std::lock_guard lock(mutex_);
  return list_;
}

void CowOriginStorage::notify_ack() {
  { std::lock_guard lock(mutex_); }  // orders the ack before the control thread's predicate check
  acked_.notify_all();
}

void CowOriginStorage::set_quiesce_timeout(std::chrono::milliseconds timeout) {
  quiesce_timeout_ms_.store(timeout.count(), std::memory_order_relaxed);
}

void CowOriginStorage::ensure_copier() {
  if (copier_) return;
  auto copier = std::make_unique<CowOriginCopier>(*inner_, [this] { return current_list(); });
  std::lock_guard lock(mutex_);
  copier_ = std::move(copier);
}

void CowOriginStorage::quiesced(const std::string& what, const std::function<std::string()>& install) {
  const auto timeout = std::chrono::milliseconds(quiesce_timeout_ms_.load(std::memory_order_relaxed));
  std::string refusal;
  bool drained = false;
  {
    std::unique_lock lock(mutex_);
    const uint64_t generation = state_.load(std::memory_order_relaxed) >> 1;
    const uint64_t hold = ((generation + 1) << 1) | kHold;
    state_.store(hold, std::memory_order_release);
    // From here on, a queue seen idle stays out of the write path until it
    // has seen the hold (CowOriginFence.hpp).
    cow_heavy_fence(cow_membarrier_available());
    for (CowOriginQueue* queue : queues_) queue->wake();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto quiet = [&] {
      return std::all_of(queues_.begin(), queues_.end(),
                         [&](CowOriginQueue* q) { return q->acked() == hold || q->idle(); });
    };
    // Busy queues acknowledge (and notify) when their writes drain; idle ones
    // are re-checked every few milliseconds.
    while (!(drained = quiet()) && std::chrono::steady_clock::now() < deadline)
      acked_.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(5)));
    if (drained) refusal = install();
    state_.store((generation + 2) << 1, std::memory_order_release);
    for (CowOriginQueue* queue : queues_) queue->wake();
  }
  if (!drained)
    throw StorageError(fmt::format(
        "snapshot: cannot {} of '{}': in-flight writes did not drain within {} ms (is the storage stuck?); "
        "writes were released, nothing was changed",
        what, describe(), timeout.count()));
  if (!refusal.empty()) throw StorageError(refusal);
}

std::shared_ptr<Snapshot> CowOriginStorage::create_snapshot(const std::string& store_path, uint32_t cluster_size) {
  std::lock_guard control(control_mutex_);
  auto store = SnapshotStore::create(store_path, describe(), properties().size_bytes, cluster_size);
  auto snapshot = std::make_shared<Snapshot>(std::move(store), canonical(store_path));
  try {
    ensure_copier();
    quiesced("take a snapshot", [&] {
      auto list = std::make_shared<SnapshotList>(*list_);
      list->push_back(snapshot);
      list_ = std::move(list);
      return std::string();
    });
  } catch (...) {
    ::unlink(snapshot->store_path().c_str());
    throw;
  }
  spdlog::info("snapshot {} of '{}' created in {} (cluster size {})", snapshot->id(), describe(),
               snapshot->store_path(), cluster_size);
  return snapshot;
}

std::shared_ptr<Snapshot> CowOriginStorage::attach_snapshot(const std::string& store_path) {
  std::lock_guard control(control_mutex_);
  const std::string path = canonical(store_path);
  {
    std::lock_guard lock(mutex_);
    if (auto existing = find_locked(path)) return existing;
  }
  auto store = SnapshotStore::open(store_path);
  store->check_origin(describe(), properties().size_bytes);
  if (store->header().state == SnapshotHeader::State::Invalid)
    throw StorageError(fmt::format("snapshot store '{}' is invalid ({}); delete it", store_path,
                                   store->header().invalid_reason));
  const std::string id = store->header().uuid_text();
  {
    std::lock_guard lock(mutex_);
    if (auto existing = find_locked(id)) return existing;  // the same store under another path
  }
  store->lock_for_writing();
  auto snapshot = std::make_shared<Snapshot>(std::move(store), path);
  ensure_copier();
  bool stale = false;
  try {
    quiesced("attach a snapshot", [&] {
      if (written_.load(std::memory_order_relaxed)) {
        stale = true;
        return fmt::format(
            "snapshot store '{}' cannot be attached: '{}' has been written since it was opened, without this "
            "snapshot, so the snapshot no longer matches it; it was marked invalid (attach snapshots before "
            "serving their origin)",
            store_path, describe());
      }
      auto list = std::make_shared<SnapshotList>(*list_);
      list->push_back(snapshot);
      list_ = std::move(list);
      return std::string();
    });
  } catch (const StorageError&) {
    if (stale) snapshot->invalidate("the origin was written while the snapshot was not attached");
    throw;
  }
  spdlog::info("snapshot {} of '{}' attached from {} ({} clusters copied)", snapshot->id(), describe(), path,
               snapshot->copied_clusters());
  return snapshot;
}

bool CowOriginStorage::delete_snapshot(const std::string& id_or_path, bool delete_store) {
  std::lock_guard control(control_mutex_);
  std::shared_ptr<Snapshot> victim;
  {
    std::lock_guard lock(mutex_);
    victim = find_locked(id_or_path);
    if (!victim) return false;
    victim->deactivate();
    auto list = std::make_shared<SnapshotList>();
    for (const auto& s : *list_)
      if (s != victim) list->push_back(s);
    list_ = std::move(list);
    // A new generation makes the queues drop it from their lists.
    const uint64_t generation = state_.load(std::memory_order_relaxed) >> 1;
    state_.store((generation + 1) << 1, std::memory_order_release);
  }
  // A kept store no longer receives copies: it must never be attached again.
  if (!delete_store) victim->store().mark_invalid("deleted from its origin");
  if (delete_store && ::unlink(victim->store_path().c_str()) != 0)
    spdlog::warn("snapshot {}: cannot delete its store {}: {}", victim->id(), victim->store_path(),
                 std::strerror(errno));
  spdlog::info("snapshot {} of '{}' deleted{}", victim->id(), describe(), delete_store ? " with its store" : "");
  return true;
}

std::vector<std::shared_ptr<Snapshot>> CowOriginStorage::snapshots() const {
  std::lock_guard lock(mutex_);
  return *list_;
}

std::shared_ptr<Snapshot> CowOriginStorage::find_snapshot(const std::string& id_or_path) const {
  std::lock_guard lock(mutex_);
  return find_locked(id_or_path);
}

std::shared_ptr<Snapshot> CowOriginStorage::find_locked(const std::string& id_or_path) const {
  const std::string path = canonical(id_or_path);
  for (const auto& s : *list_)
    if (s->id() == id_or_path || s->store_path() == id_or_path || s->store_path() == path) return s;
  return nullptr;
}

}  // namespace xbb::storage
