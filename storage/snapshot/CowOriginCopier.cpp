#include "storage/snapshot/CowOriginCopier.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace xbb::storage {
namespace {

constexpr unsigned kOriginDepth = 4;
constexpr size_t kBufferAlignment = 4096;  // enough for O_DIRECT origins

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using AlignedBytes = std::unique_ptr<uint8_t, FreeDeleter>;

AlignedBytes aligned_bytes(size_t size) {
  const size_t rounded = (std::max<size_t>(size, 1) + kBufferAlignment - 1) / kBufferAlignment * kBufferAlignment;
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(kBufferAlignment, rounded));
  if (p == nullptr) throw std::bad_alloc();
  return AlignedBytes(p);
}

}  // namespace

CowOriginCopier::CowOriginCopier(Storage& origin, std::function<std::shared_ptr<const SnapshotList>()> active)
    : origin_(origin),
      origin_size_(origin.properties().size_bytes),
      active_(std::move(active)),
      origin_queue_(origin.open_queue(kOriginDepth)) {
  if (!origin_queue_) throw StorageError(fmt::format("snapshot: cannot open a queue on '{}'", origin.describe()));
  thread_ = std::thread([this] { run(); });
}

CowOriginCopier::~CowOriginCopier() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void CowOriginCopier::enqueue(Job job) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(job));
  }
  wake_.notify_one();
}

void CowOriginCopier::copy_before_write(std::shared_ptr<CowOriginMailbox> reply, uint32_t slot, uint64_t offset,
                                        uint64_t length) {
  enqueue(Job{std::move(reply), slot, offset, length, nullptr, nullptr, 0});
}

void CowOriginCopier::read_snapshot(std::shared_ptr<CowOriginMailbox> reply, uint32_t slot,
                                    std::shared_ptr<Snapshot> snapshot, uint64_t offset, const iovec* iov,
                                    unsigned iovcnt, uint64_t bytes) {
  enqueue(Job{std::move(reply), slot, offset, bytes, std::move(snapshot), iov, iovcnt});
}

void CowOriginCopier::run() {
  std::vector<Job> writes;
  std::vector<Job> reads;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, and nothing left to do
      for (Job& job : jobs_) (job.snapshot ? reads : writes).push_back(std::move(job));
      jobs_.clear();
    }
    // Everything queued so far forms one batch: its copies share fdatasyncs.
    if (!writes.empty()) {
      try {
        copy_batch(writes);
      } catch (const std::exception& e) {  // bad_alloc: the snapshots cannot be kept, the origin must go on
        for (const auto& snapshot : *active_()) snapshot->invalidate(fmt::format("copy-on-write failed: {}", e.what()));
      }
      for (const Job& job : writes) job.reply->post(job.slot, 0);
      writes.clear();
    }
    for (const Job& read : reads) {
      try {
        serve_read(read);
      } catch (const std::exception& e) {
        spdlog::error("snapshot {}: read failed: {}", read.snapshot->id(), e.what());
        read.reply->post(read.slot, -EIO);
      }
    }
    reads.clear();
  }
}

void CowOriginCopier::copy_batch(const std::vector<Job>& writes) {
  const std::shared_ptr<const SnapshotList> snapshots = active_();
  for (const auto& snapshot : *snapshots)
    if (snapshot->valid() && snapshot->active()) copy_into(*snapshot, writes);
}

void CowOriginCopier::copy_into(Snapshot& snapshot, const std::vector<Job>& writes) {
  const uint64_t cluster_size = snapshot.cluster_size();
  std::vector<uint64_t> clusters;
  for (const Job& job : writes) {
    if (job.offset >= origin_size_) continue;
    const uint64_t end = std::min(job.offset + job.length, origin_size_);
    for (uint64_t c = job.offset / cluster_size; c <= (end - 1) / cluster_size; ++c)
      if (!snapshot.is_copied(c)) clusters.push_back(c);
  }
  if (clusters.empty()) return;
  std::sort(clusters.begin(), clusters.end());
  clusters.erase(std::unique(clusters.begin(), clusters.end()), clusters.end());

  SnapshotStore& store = snapshot.store();
  auto fail = [&](const char* step, int error) {
    snapshot.invalidate(fmt::format("{}: {}", step, std::strerror(-error)));
  };
  // 1. The old data, appended to the store.
  AlignedBytes buffer = aligned_bytes(cluster_size);
  std::vector<uint64_t> offsets(clusters.size());
  for (size_t i = 0; i < clusters.size(); ++i) {
    const uint64_t start = clusters[i] * cluster_size;
    const size_t length = static_cast<size_t>(std::min(cluster_size, origin_size_ - start));
    if (int rc = origin_read(start, buffer.get(), length)) return fail("reading the origin for copy-on-write", rc);
    if (int rc = store.write_cluster(clusters[i], buffer.get(), length, offsets[i]))
      return fail("writing a cluster to the backing store", rc);
  }
  // 2. Durable before any map entry points at it.
  if (int rc = store.sync()) return fail("syncing copied clusters", rc);
  // 3. The map entries, durable before any origin write is let through.
  for (size_t i = 0; i < clusters.size(); ++i)
    if (int rc = store.write_map_entry(clusters[i], offsets[i])) return fail("writing the cluster map", rc);
  if (int rc = store.sync()) return fail("syncing the cluster map", rc);
  // 4. Workers may now overwrite these clusters directly.
  for (uint64_t c : clusters) snapshot.mark_copied(c);
}

void CowOriginCopier::serve_read(const Job& read) {
  Snapshot& snapshot = *read.snapshot;
  auto refuse = [&](const std::string& why) {
    if (snapshot.first_failed_read())
      spdlog::error("snapshot {} ({}): reads fail with EIO: {}", snapshot.id(), snapshot.store_path(), why);
    read.reply->post(read.slot, -EIO);
  };
  if (!snapshot.valid()) return refuse("the snapshot is invalid (" + snapshot.invalid_reason() + ")");
  if (!snapshot.active()) return refuse("the snapshot was deleted");

  const uint64_t cluster_size = snapshot.cluster_size();
  const uint64_t end = read.offset + read.length;
  AlignedBytes buffer = aligned_bytes(read.length);
  uint64_t origin_run = read.offset;  // start of uncopied bytes not yet read from the origin
  auto flush_origin_run = [&](uint64_t upto) -> int {
    if (upto <= origin_run) return 0;
    return origin_read(origin_run, buffer.get() + (origin_run - read.offset), upto - origin_run);
  };
  for (uint64_t pos = read.offset; pos < end;) {
    const uint64_t cluster = pos / cluster_size;
    const uint64_t piece_end = std::min((cluster + 1) * cluster_size, end);
    if (snapshot.is_copied(cluster)) {
      if (int rc = flush_origin_run(pos)) return refuse(fmt::format("origin read failed: {}", std::strerror(-rc)));
      if (int rc = snapshot.store().read_copied(cluster, pos - cluster * cluster_size, buffer.get() + (pos - read.offset),
                                                piece_end - pos)) {
        snapshot.invalidate(fmt::format("reading the backing store: {}", std::strerror(-rc)));
        return refuse("backing store read failed");
      }
      origin_run = piece_end;
    }
    pos = piece_end;
  }
  if (int rc = flush_origin_run(end)) return refuse(fmt::format("origin read failed: {}", std::strerror(-rc)));
  // Deleted while we read: the origin may have been written without copies.
  if (!snapshot.active()) return refuse("the snapshot was deleted");
  read.reply->deliver_read(read.slot, {buffer.get(), static_cast<size_t>(read.length)}, read.iov, read.iovcnt);
}

int CowOriginCopier::origin_read(uint64_t offset, void* into, size_t length) {
  iovec v{into, length};
  IoRequest request;
  request.op = IoOp::Read;
  request.offset = offset;
  request.length = length;
  request.iov = &v;
  request.iovcnt = 1;
  if (int rc = origin_queue_->submit(request)) return rc;
  origin_queue_->flush_submissions();
  IoCompletion done;
  for (;;) {
    if (origin_queue_->reap({&done, 1}) == 1)
      return done.result < 0 ? done.result : (static_cast<size_t>(done.result) == length ? 0 : -EIO);
    pollfd p{origin_queue_->completion_fd(), POLLIN, 0};
    ::poll(&p, 1, -1);
  }
}

}  // namespace xbb::storage
