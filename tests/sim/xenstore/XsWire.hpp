// The xenstore socket wire format (xen/io/xs_wire.h) for the cross-process
// simulated store: framing of xsd_sockmsg messages, errno names, the "r5"
// permission strings and NUL-separated argument lists. Shared by
// SimStoreServer and SimStoreClient; libxenstore speaks the same format, so it
// can be pointed at the server.
#pragma once

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <xen/io/xs_wire.h>

#include "xenstore/XenStore.hpp"

namespace xbb::sim::wire {

// Sim-only first message naming the connecting domain (payload "<domid>\0").
// Real xenstored has no such message: on a real host a guest's connection is
// its shared ring, identified by the hypervisor. A connection that starts
// with any other message is dom0, like a real xenstored socket connection.
inline constexpr uint32_t kSimHandshake = 0x58425300;  // "XBS\0", far from real types

struct Message {
  uint32_t type = 0;
  uint32_t req_id = 0;
  uint32_t tx_id = 0;
  std::string payload;
};

std::string encode(const Message& msg);

// Reassembles messages from a byte stream.
class Decoder {
 public:
  void feed(const char* data, size_t len) { buffer_.append(data, len); }
  // The next complete message, or nullopt. Throws xs::Error(EPROTO) on a
  // header announcing more than XENSTORE_PAYLOAD_MAX bytes: the stream can
  // no longer be trusted and the connection must be closed.
  std::optional<Message> next();

 private:
  std::string buffer_;
};

// The errno <-> name table of xs_wire.h. Unknown numbers map to "EINVAL" and
// unknown names to EINVAL, as xenstored and libxenstore do.
std::string errno_name(int err);
int errno_from_name(std::string_view name);

// "n0", "r5", "w7", "b3" (letter + decimal domid).
std::string perm_to_string(const xs::Permission& perm);
std::optional<xs::Permission> perm_from_string(std::string_view text);

// Splits "a\0b\0" into {"a", "b"}; a final unterminated piece is kept.
std::vector<std::string> split_strings(std::string_view payload);

}  // namespace xbb::sim::wire
