#include "storage/nbd/NbdHandle.hpp"

#include <libnbd.h>

#include <algorithm>
#include <bit>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace xbb::storage {
namespace {

constexpr uint32_t kMaxIoBytes = 32u << 20;    // the NBD spec's safe payload limit
constexpr uint64_t kMaxTrimBytes = 1ull << 30;  // trim lengths are 32-bit on the wire

uint32_t block_size_or(nbd_handle* handle, int which, uint32_t fallback) {
  const int64_t value = nbd_get_block_size(handle, which);
  if (value <= 0 || value > (int64_t{1} << 30)) return fallback;  // 0: not reported; -1: error
  return static_cast<uint32_t>(value);
}

}  // namespace

void NbdHandleCloser::operator()(nbd_handle* handle) const { nbd_close(handle); }

NbdHandle make_nbd_handle() {
  NbdHandle handle(nbd_create());
  if (!handle) throw StorageError(fmt::format("nbd: cannot create a libnbd handle: {}", nbd_last_error()));
  return handle;
}

std::string nbd_last_error() {
  const char* message = nbd_get_error();
  return message ? message : "unknown libnbd error";
}

void connect_nbd(nbd_handle* handle, const std::string& uri, std::chrono::milliseconds timeout) {
  if (nbd_aio_connect_uri(handle, uri.c_str()) == -1)
    throw StorageError(fmt::format("nbd: cannot connect to '{}': {}", uri, nbd_last_error()));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (nbd_aio_is_connecting(handle) == 1) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      throw StorageError(fmt::format("nbd: connecting to '{}' timed out after {} ms", uri, timeout.count()));
    if (nbd_poll(handle, static_cast<int>(std::min<int64_t>(left.count() + 1, INT32_MAX))) == -1)
      throw StorageError(fmt::format("nbd: cannot connect to '{}': {}", uri, nbd_last_error()));
  }
  if (nbd_aio_is_ready(handle) != 1)
    throw StorageError(fmt::format("nbd: cannot connect to '{}': {}", uri, nbd_last_error()));
}

NbdServerShape describe_nbd_server(nbd_handle* handle, const std::string& uri, bool read_only_requested) {
  NbdServerShape shape;
  Properties& p = shape.properties;

  const uint32_t minimum = block_size_or(handle, LIBNBD_SIZE_MINIMUM, 0);
  const uint32_t preferred = block_size_or(handle, LIBNBD_SIZE_PREFERRED, 0);
  const uint32_t maximum = block_size_or(handle, LIBNBD_SIZE_MAXIMUM, 0);
  if (minimum != 0 && !std::has_single_bit(minimum))
    throw StorageError(fmt::format("nbd: '{}' reports a minimum block size of {}, which is not a power of two", uri, minimum));
  p.logical_block_size = std::max<uint32_t>(512, minimum);
  const uint32_t physical = preferred != 0 && std::has_single_bit(preferred) ? preferred : 4096;
  p.physical_block_size = std::max(p.logical_block_size, physical);

  const int64_t size = nbd_get_size(handle);
  if (size < 0) throw StorageError(fmt::format("nbd: cannot get the size of '{}': {}", uri, nbd_last_error()));
  p.size_bytes = static_cast<uint64_t>(size) / p.logical_block_size * p.logical_block_size;
  if (p.size_bytes == 0)
    throw StorageError(fmt::format("nbd: '{}' is {} bytes, smaller than one {}-byte block", uri, size, p.logical_block_size));
  if (p.size_bytes != static_cast<uint64_t>(size))
    spdlog::warn("nbd: '{}' is {} bytes; serving the first {} (a whole number of {}-byte blocks)", uri, size,
                 p.size_bytes, p.logical_block_size);

  const bool server_read_only = nbd_is_read_only(handle) == 1;
  if (server_read_only && !read_only_requested)
    spdlog::warn("nbd: '{}' is a read-only export; the disk will be read-only", uri);
  p.read_only = read_only_requested || server_read_only;
  p.can_flush = nbd_can_flush(handle) == 1;
  p.can_discard = !p.read_only && nbd_can_trim(handle) == 1;
  if (p.can_discard) p.discard_granularity = std::max(p.logical_block_size, physical);
  p.can_secure_discard = false;
  shape.can_multi_conn = nbd_can_multi_conn(handle) == 1;

  uint32_t max_io = maximum != 0 ? std::min(maximum, kMaxIoBytes) : kMaxIoBytes;
  max_io = max_io / p.logical_block_size * p.logical_block_size;
  if (max_io == 0)
    throw StorageError(fmt::format("nbd: '{}' reports a maximum block size {} below its minimum {}", uri, maximum,
                                   p.logical_block_size));
  shape.max_io_bytes = max_io;
  const uint64_t trim_unit = p.can_discard ? p.discard_granularity : p.logical_block_size;
  shape.max_trim_bytes = kMaxTrimBytes / trim_unit * trim_unit;
  return shape;
}

}  // namespace xbb::storage
