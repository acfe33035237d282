// The XenStore port. The real adapter speaks to xenstored through
// libxenstore; the simulated one (tests/sim/xenstore) keeps the tree in
// memory with xenstored's semantics. Used from the control thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace xbb::xs {

using DomId = uint16_t;
using TxId = uint32_t;
inline constexpr TxId kNoTransaction = 0;

// Xen's node permissions: the first entry names the owner and the access
// every other domain gets; later entries grant access to specific domains.
struct Permission {
  enum class Access : uint8_t { None, Read, Write, Both };
  DomId domid = 0;
  Access access = Access::None;
  bool operator==(const Permission&) const = default;
};

struct WatchEvent {
  std::string path;   // the node that changed (or the watched path on registration)
  std::string token;
};

// A failed operation other than "no such node", carrying the errno
// (EACCES, EINVAL, EAGAIN, ...) and the path.
class Error : public std::system_error {
 public:
  Error(int err, const std::string& what) : std::system_error(err, std::generic_category(), what) {}
};

class XenStore {
 public:
  virtual ~XenStore() = default;

  virtual std::optional<std::string> read(TxId tx, const std::string& path) = 0;  // nullopt: ENOENT
  virtual void write(TxId tx, const std::string& path, const std::string& value) = 0;
  virtual void mkdir(TxId tx, const std::string& path) = 0;
  virtual void rm(TxId tx, const std::string& path) = 0;  // recursive; absent is not an error
  virtual std::optional<std::vector<std::string>> directory(TxId tx, const std::string& path) = 0;
  virtual std::vector<Permission> get_permissions(TxId tx, const std::string& path) = 0;
  virtual void set_permissions(TxId tx, const std::string& path, const std::vector<Permission>& perms) = 0;

  // Fires once on registration and on every change in the subtree of `path`
  // (and for the special paths @introduceDomain / @releaseDomain).
  virtual void watch(const std::string& path, const std::string& token) = 0;
  virtual void unwatch(const std::string& path, const std::string& token) = 0;
  virtual int watch_fd() const = 0;                      // readable when an event is queued
  virtual std::optional<WatchEvent> read_watch() = 0;    // non-blocking

  virtual TxId transaction_start() = 0;
  // Returns false when a commit failed with EAGAIN (a conflict): retry the whole transaction.
  virtual bool transaction_end(TxId tx, bool commit) = 0;
};

}  // namespace xbb::xs
