// RAII for a libnbd handle, and what xbbd learns from a connected server.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "storage/Storage.hpp"

struct nbd_handle;

namespace xbb::storage {

struct NbdHandleCloser {
  void operator()(nbd_handle* handle) const;  // nbd_close: libnbd then drops every command
};
using NbdHandle = std::unique_ptr<nbd_handle, NbdHandleCloser>;

// A fresh, unconnected handle. Throws StorageError.
NbdHandle make_nbd_handle();

// libnbd's message for the last failure on this thread.
std::string nbd_last_error();

// Connects `handle` to `uri`, waiting at most `timeout` (a dead host must not
// hang whoever opens the target). Throws StorageError naming the URI.
void connect_nbd(nbd_handle* handle, const std::string& uri, std::chrono::milliseconds timeout);

// What the server says about its export, turned into storage terms.
struct NbdServerShape {
  Properties properties;
  bool can_multi_conn = false;
  uint32_t max_io_bytes = 0;     // largest read/write sent as one command
  uint64_t max_trim_bytes = 0;   // largest trim sent as one command
};

// Reads the export's properties from a connected handle:
//  - size: nbd_get_size, rounded down to the logical block size (the rest is
//    unaddressable through blkif's 512-byte sectors anyway)
//  - logical block size: the server's minimum block size when it reports one
//    (raised to 512), else 512; physical: its preferred size, else 4096
//  - read-only: the server's flag, or `read_only_requested`
//  - flush and trim: nbd_can_flush / nbd_can_trim; discard granularity is the
//    preferred block size, else 4096; never secure discard
// Throws StorageError for an export xbbd cannot serve (empty, odd block sizes).
NbdServerShape describe_nbd_server(nbd_handle* handle, const std::string& uri, bool read_only_requested);

}  // namespace xbb::storage
