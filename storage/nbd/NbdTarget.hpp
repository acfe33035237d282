// The argument of an `nbd:` target: an NBD URI as libnbd understands it,
// optionally followed by xbbd's own settings after a '#':
//
//   nbd:URI[#SETTING[&SETTING...]]
//
//   nbd:nbd+unix:///export?socket=/run/nbd.sock
//   nbd:nbd://host:10809/export#reconnect=2s&timeout=10s
//
// Settings (a DURATION is digits with an optional unit ms, s or m; bare digits
// are seconds):
//   reconnect=DURATION|off  after the connection dies, try to reconnect this
//                           often (default 5s). Requests submitted while no
//                           connection is up fail with -ENOTCONN; `off` makes
//                           a lost connection permanent.
//   timeout=DURATION        a request not answered within this time fails with
//                           -ETIMEDOUT and the connection is reset, since a
//                           server that sits on one request is presumed wedged
//                           (default 30s, at least 1ms). Connect attempts get
//                           the same limit.
//   multi-conn=off          share one connection among all queues even when
//                           the server allows several (see NbdStorage.hpp).
//
// The '#' cannot clash with the URI: NBD URIs have no fragment.
#pragma once

#include <chrono>
#include <string>

namespace xbb::storage {

struct NbdTarget {
  std::string uri;
  std::chrono::milliseconds reconnect_interval{5000};  // 0: never reconnect
  std::chrono::milliseconds request_timeout{30000};
  bool allow_multi_conn = true;

  // Throws StorageError naming the bad part, e.g.
  // "nbd: timeout 'soon' is not a duration (e.g. 500ms, 30s, 2m)".
  static NbdTarget parse(const std::string& argument);
  // The target as it would be written (for describe() and logs).
  std::string to_string() const;
};

}  // namespace xbb::storage
