#include "storage/nbd/NbdStorage.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "storage/KindTable.hpp"
#include "storage/nbd/NbdQueue.hpp"

namespace xbb::storage {

std::unique_ptr<NbdStorage> NbdStorage::open(const std::string& argument, const OpenOptions& options) {
  NbdTarget target = NbdTarget::parse(argument);
  NbdHandle handle = make_nbd_handle();
  connect_nbd(handle.get(), target.uri, target.request_timeout);
  NbdServerShape shape = describe_nbd_server(handle.get(), target.uri, options.read_only);
  spdlog::info("nbd: '{}': {} bytes, blocks {}/{}, {}{}{}, {}", target.uri, shape.properties.size_bytes,
               shape.properties.logical_block_size, shape.properties.physical_block_size,
               shape.properties.read_only ? "read-only" : "read-write", shape.properties.can_flush ? ", flush" : "",
               shape.properties.can_discard ? ", trim" : "",
               !shape.can_multi_conn      ? "one connection for all queues (the server does not allow multi-conn)"
               : !target.allow_multi_conn ? "one connection for all queues (multi-conn=off)"
                                          : "one connection per queue (multi-conn)");
  return std::unique_ptr<NbdStorage>(new NbdStorage(std::move(target), shape, std::move(handle)));
}

NbdStorage::NbdStorage(NbdTarget target, NbdServerShape shape, NbdHandle connected)
    : target_(std::move(target)),
      shape_(shape),
      per_queue_(shape.can_multi_conn && target_.allow_multi_conn),
      spare_(std::move(connected)) {
  if (!per_queue_) shared_ = std::make_shared<NbdConnection>(target_, shape_, std::move(spare_));
}

std::unique_ptr<StorageQueue> NbdStorage::open_queue(unsigned depth) {
  if (depth == 0 || depth > NbdQueue::kMaxDepth)  // before a connection is spent on it
    throw StorageError(fmt::format("nbd: queue depth {} is not between 1 and {}", depth, NbdQueue::kMaxDepth));
  std::shared_ptr<NbdConnection> connection;
  {
    std::lock_guard lock(mutex_);
    if (per_queue_)
      connection = std::make_shared<NbdConnection>(target_, shape_, std::move(spare_));  // null spare: connects
    else
      connection = shared_;
  }
  return std::make_unique<NbdQueue>(std::move(connection), shape_.properties, depth);
}

void add_nbd_kinds(KindTable& table) {
  table.kinds["nbd"] = [](const std::string& argument, const OpenOptions& options) {
    return std::unique_ptr<Storage>(NbdStorage::open(argument, options));
  };
}

}  // namespace xbb::storage
