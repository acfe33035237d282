// An in-memory xenstore with xenstored's semantics, shared by any number of
// connections (one per simulated domain or daemon thread):
//  - nodes with a value and permissions; the first permission entry names the
//    owner and the access of every unlisted domain; dom0 and the owner have
//    full access; new nodes inherit their parent's permissions, owned by the
//    creating domain when it is not dom0; writes create missing parents;
//  - errors as xenstored reports them (a missing node under a parent you may
//    not read is EACCES, not ENOENT, so its absence leaks nothing);
//  - watches per connection with tokens, fired on registration and for every
//    change in the watched subtree, only to connections that may read the
//    changed node; @introduceDomain / @releaseDomain special watches;
//  - transactions with snapshot isolation: a commit fails (EAGAIN) when any
//    node the transaction read or wrote was changed by someone else since the
//    transaction started.
// Thread-safe: one mutex serialises everything (the store is not a hot path).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "storage/UniqueFd.hpp"
#include "xenstore/XenStore.hpp"

namespace xbb::sim {

using xs::DomId;
using xs::Permission;
using xs::TxId;
using xs::WatchEvent;

class SimStore {
 public:
  using ConnId = uint64_t;

  // Hard limits, as xenstored enforces (values are rejected, not truncated).
  static constexpr size_t kMaxValueLength = 4096;      // XENSTORE_PAYLOAD_MAX
  static constexpr size_t kMaxPathLength = 3072;       // XENSTORE_ABS_PATH_MAX
  static constexpr size_t kMaxQueuedEvents = 65536;    // per connection

  SimStore();
  ~SimStore();
  SimStore(const SimStore&) = delete;
  SimStore& operator=(const SimStore&) = delete;

  // Connections. A connection owns its watches, event queue and transactions;
  // disconnect() drops them (open transactions are aborted).
  ConnId connect(DomId domid);
  void disconnect(ConnId conn);
  DomId domid_of(ConnId conn) const;
  // An eventfd that is readable while the connection has queued events.
  int event_fd(ConnId conn) const;
  std::optional<WatchEvent> pop_event(ConnId conn);

  // The XenStore operations, on behalf of a connection. Paths may be absolute
  // or relative to /local/domain/<domid>. Errors throw xs::Error(errno).
  std::optional<std::string> read(ConnId conn, TxId tx, const std::string& path);
  void write(ConnId conn, TxId tx, const std::string& path, const std::string& value);
  void mkdir(ConnId conn, TxId tx, const std::string& path);
  void rm(ConnId conn, TxId tx, const std::string& path);
  std::optional<std::vector<std::string>> directory(ConnId conn, TxId tx, const std::string& path);
  std::vector<Permission> get_permissions(ConnId conn, TxId tx, const std::string& path);
  void set_permissions(ConnId conn, TxId tx, const std::string& path, const std::vector<Permission>& perms);
  void watch(ConnId conn, const std::string& path, const std::string& token);
  void unwatch(ConnId conn, const std::string& path, const std::string& token);
  TxId transaction_start(ConnId conn);
  bool transaction_end(ConnId conn, TxId tx, bool commit);

  // Fire the special watches, as xenstored does when the toolstack
  // introduces a domain or when a domain dies (xl destroy, crash).
  void introduce_domain(DomId domid);
  void release_domain(DomId domid);

  // Introspection for tests.
  size_t open_transactions() const;
  size_t node_count() const;

 private:
  struct Node {
    std::string value;
    std::vector<Permission> perms;
  };
  using Tree = std::map<std::string, Node>;

  // A change to report to watchers: the node path and the permissions that
  // decide who may see it (for removals, each removed node's last perms).
  struct Change {
    std::string path;
    std::vector<Permission> perms;
    std::vector<Permission> old_perms;  // set_perms: visible under either
    std::vector<std::pair<std::string, std::vector<Permission>>> removed;  // rm: the whole subtree
  };

  struct Transaction {
    ConnId owner = 0;
    uint64_t start_generation = 0;
    Tree tree;                        // private snapshot plus own changes
    std::set<std::string> touched;    // read or written: checked at commit
    std::set<std::string> written;    // copied back to the store at commit
    std::vector<Change> changes;      // fired at commit
  };

  struct Watch {
    std::string path;      // canonical (absolute or @special)
    std::string token;
    bool relative = false; // registered relative: events are reported relative
  };

  struct Connection {
    DomId domid = 0;
    std::vector<Watch> watches;
    std::deque<WatchEvent> queue;
    storage::UniqueFd event_fd;
  };

  // Where an operation applies: the live tree or a transaction's snapshot.
  struct View {
    Tree* tree;
    Transaction* tx;
    DomId domid;
  };

  Connection& conn_locked(ConnId conn);
  const Connection& conn_locked(ConnId conn) const;
  View view_locked(ConnId conn, TxId tx);
  std::string canonical(DomId domid, const std::string& path) const;

  static unsigned perm_for(DomId domid, const std::vector<Permission>& perms);
  int errno_from_parents(const View& v, const std::string& path, int err, unsigned need);
  void touch(const View& v, const std::string& path);
  void note_written(const View& v, const std::string& path);
  void record_change(const View& v, Change change);
  void create_node(const View& v, const std::string& path, const std::string& value);

  void fire_locked(const Change& change);
  void queue_event_locked(Connection& c, const Watch& w, const std::string& path);
  void fire_special_locked(const std::string& name);
  void prune_history_locked();

  mutable std::mutex mu_;
  Tree tree_;
  std::map<ConnId, Connection> conns_;
  std::map<TxId, Transaction> txs_;
  // Generation at which each path last changed outside a transaction (or by a
  // commit); only kept while transactions are open.
  std::map<std::string, uint64_t> changed_at_;
  uint64_t generation_ = 0;
  ConnId next_conn_ = 1;
  TxId next_tx_ = 1;
};

}  // namespace xbb::sim
