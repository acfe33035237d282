#include "tests/sim/xenstore/SimStore.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace xbb::sim {
namespace {

using xs::Error;

constexpr unsigned kRead = 1;
constexpr unsigned kWrite = 2;
constexpr unsigned kOwner = 4;
constexpr size_t kMaxWatchesPerGuest = 128;          // xenstored's default quota
constexpr size_t kMaxTransactionsPerConnection = 64;

unsigned access_bits(Permission::Access a) {
  switch (a) {
    case Permission::Access::None: return 0;
    case Permission::Access::Read: return kRead;
    case Permission::Access::Write: return kWrite;
    case Permission::Access::Both: return kRead | kWrite;
  }
  return 0;
}

std::string parent_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == 0 || slash == std::string::npos) return "/";
  return path.substr(0, slash);
}

std::string child_prefix(const std::string& path) { return path == "/" ? "/" : path + "/"; }

// True if `node` is `dir` or lies below it.
bool in_subtree(const std::string& dir, const std::string& node) {
  if (dir == node || dir == "/") return true;
  return node.size() > dir.size() && node.compare(0, dir.size(), dir) == 0 && node[dir.size()] == '/';
}

bool valid_chars(const std::string& path) {
  for (char c : path) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '/' || c == '_' || c == '-' || c == '@';
    if (!ok) return false;
  }
  return true;
}

std::string home_of(DomId domid) { return "/local/domain/" + std::to_string(domid); }

}  // namespace

SimStore::SimStore() { tree_["/"] = Node{"", {Permission{0, Permission::Access::None}}}; }

SimStore::~SimStore() = default;

// ---------------------------------------------------------------- connections

SimStore::ConnId SimStore::connect(DomId domid) {
  storage::UniqueFd efd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!efd) throw Error(errno, "eventfd for simulated xenstore connection");
  std::lock_guard lock(mu_);
  const ConnId id = next_conn_++;
  Connection& c = conns_[id];
  c.domid = domid;
  c.event_fd = std::move(efd);
  return id;
}

void SimStore::disconnect(ConnId conn) {
  std::lock_guard lock(mu_);
  for (auto it = txs_.begin(); it != txs_.end();) {
    it = it->second.owner == conn ? txs_.erase(it) : std::next(it);
  }
  conns_.erase(conn);
  prune_history_locked();
}

SimStore::Connection& SimStore::conn_locked(ConnId conn) {
  auto it = conns_.find(conn);
  if (it == conns_.end()) throw Error(EBADF, "simulated xenstore: unknown connection");
  return it->second;
}

const SimStore::Connection& SimStore::conn_locked(ConnId conn) const {
  auto it = conns_.find(conn);
  if (it == conns_.end()) throw Error(EBADF, "simulated xenstore: unknown connection");
  return it->second;
}

DomId SimStore::domid_of(ConnId conn) const {
  std::lock_guard lock(mu_);
  return conn_locked(conn).domid;
}

int SimStore::event_fd(ConnId conn) const {
  std::lock_guard lock(mu_);
  return conn_locked(conn).event_fd.get();
}

std::optional<WatchEvent> SimStore::pop_event(ConnId conn) {
  std::lock_guard lock(mu_);
  Connection& c = conn_locked(conn);
  if (c.queue.empty()) return std::nullopt;
  WatchEvent ev = std::move(c.queue.front());
  c.queue.pop_front();
  if (c.queue.empty()) {
    uint64_t drained = 0;
    // Non-blocking: the counter is non-zero exactly while events are queued.
    if (::read(c.event_fd.get(), &drained, sizeof drained) < 0 && errno != EAGAIN) {
      spdlog::warn("simulated xenstore: draining eventfd: {}", std::strerror(errno));
    }
  }
  return ev;
}

// ------------------------------------------------------------------- helpers

SimStore::View SimStore::view_locked(ConnId conn, TxId tx) {
  Connection& c = conn_locked(conn);
  if (tx == xs::kNoTransaction) return View{&tree_, nullptr, c.domid};
  auto it = txs_.find(tx);
  if (it == txs_.end() || it->second.owner != conn) {
    throw Error(EINVAL, "simulated xenstore: unknown transaction " + std::to_string(tx));
  }
  return View{&it->second.tree, &it->second, c.domid};
}

std::string SimStore::canonical(DomId domid, const std::string& path) const {
  if (path.empty()) throw Error(EINVAL, "empty xenstore path");
  std::string p = path[0] == '/' ? path : home_of(domid) + "/" + path;
  const bool ok = p.size() <= kMaxPathLength && valid_chars(p) && p.find("//") == std::string::npos &&
                  (p.size() == 1 || p.back() != '/');
  if (!ok) throw Error(EINVAL, "invalid xenstore path");
  return p;
}

unsigned SimStore::perm_for(DomId domid, const std::vector<Permission>& perms) {
  if (domid == 0) return kRead | kWrite | kOwner;
  if (perms.empty()) return 0;
  if (perms[0].domid == domid) return kRead | kWrite | kOwner;
  for (size_t i = 1; i < perms.size(); ++i) {
    if (perms[i].domid == domid) return access_bits(perms[i].access);
  }
  return access_bits(perms[0].access);
}

// A missing node's errno depends on whether its nearest existing ancestor
// grants the wanted access: otherwise EACCES, so a guest cannot probe for
// nodes it has no business knowing about.
int SimStore::errno_from_parents(const View& v, const std::string& path, int err, unsigned need) {
  std::string p = path;
  while (p != "/") {
    p = parent_of(p);
    auto it = v.tree->find(p);
    if (it != v.tree->end()) {
      touch(v, p);
      return (perm_for(v.domid, it->second.perms) & need) ? err : EACCES;
    }
  }
  return EACCES;  // unreachable: the root always exists
}

void SimStore::touch(const View& v, const std::string& path) {
  if (v.tx) v.tx->touched.insert(path);
}

void SimStore::note_written(const View& v, const std::string& path) {
  if (v.tx) {
    v.tx->touched.insert(path);
    v.tx->written.insert(path);
    return;
  }
  ++generation_;
  if (!txs_.empty()) changed_at_[path] = generation_;
}

void SimStore::record_change(const View& v, Change change) {
  if (v.tx) {
    v.tx->changes.push_back(std::move(change));
  } else {
    fire_locked(change);
  }
}

void SimStore::create_node(const View& v, const std::string& path, const std::string& value) {
  std::vector<std::string> missing;
  std::string p = path;
  while (v.tree->find(p) == v.tree->end()) {
    missing.push_back(p);
    p = parent_of(p);
  }
  note_written(v, p);  // its list of children changes
  std::vector<Permission> perms = v.tree->at(p).perms;
  // Unprivileged domains own what they create; dom0 keeps the parent's owner.
  if (v.domid != 0 && !perms.empty()) perms[0].domid = v.domid;
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    (*v.tree)[*it] = Node{*it == path ? value : std::string(), perms};
    note_written(v, *it);
  }
  record_change(v, Change{path, perms, {}, {}});
}

// -------------------------------------------------------------- operations

std::optional<std::string> SimStore::read(ConnId conn, TxId tx, const std::string& path) {
  std::lock_guard lock(mu_);
  View v = view_locked(conn, tx);
  const std::string p = canonical(v.domid, path);
  touch(v, p);
  auto it = v.tree->find(p);
  if (it == v.tree->end()) {
    const int err = errno_from_parents(v, p, ENOENT, kRead);
    if (err == ENOENT) return std::nullopt;
    throw Error(err, "read " + p);
  }
  if (!(perm_for(v.domid, it->second.perms) & kRead)) throw Error(EACCES, "read " + p);
  return it->second.value;
}

void SimStore::write(ConnId conn, TxId tx, const std::string& path, const std::string& value) {
  std::lock_guard lock(mu_);
  View v = view_locked(conn, tx);
  const std::string p = canonical(v.domid, path);
  if (value.size() > kMaxValueLength) throw Error(E2BIG, "write " + p);
  touch(v, p);
  auto it = v.tree->find(p);
  if (it != v.tree->end()) {
    if (!(perm_for(v.domid, it->second.perms) & kWrite)) throw Error(EACCES, "write " + p);
    it->second.value = value;
    note_written(v, p);
    record_change(v, Change{p, it->second.perms, {}, {}});
    return;
  }
  const int err = errno_from_parents(v, p, ENOENT, kWrite);
  if (err != ENOENT) throw Error(err, "write " + p);
  create_node(v, p, value);
}

void SimStore::mkdir(ConnId conn, TxId tx, const std::string& path) {
  std::lock_guard lock(mu_);
  View v = view_locked(conn, tx);
  const std::string p = canonical(v.domid, path);
  touch(v, p);
  auto it = v.tree->find(p);
  if (it != v.tree->end()) {
    if (!(perm_for(v.domid, it->second.perms) & kWrite)) throw Error(EACCES, "mkdir " + p);
    return;  // already there: nothing changes, nothing fires
  }
  const int err = errno_from_parents(v, p, ENOENT, kWrite);
  if (err != ENOENT) throw Error(err, "mkdir " + p);
  create_node(v, p, "");
}

void SimStore::rm(ConnId conn, TxId tx, const std::string& path) {
  std::lock_guard lock(mu_);
  View v = view_locked(conn, tx);
  const std::string p = canonical(v.domid, path);
  if (p == "/") throw Error(EINVAL, "rm of the root node");
  touch(v, p);
  auto it = v.tree->find(p);
  if (it == v.tree->end()) {
    const int err = errno_from_parents(v, p, ENOENT, kWrite);
    if (err == ENOENT) return;  // absent is not an error
    throw Error(err, "rm " + p);
  }
  if (!(perm_for(v.domid, it->second.perms) & kWrite)) throw Error(EACCES, "rm " + p);
  Change change{p, it->second.perms, {}, {}};
  const std::string prefix = child_prefix(p);
  change.removed.emplace_back(p, it->second.perms);
  // Descendants are the keys starting with "<p>/"; they are contiguous in the
  // map but need not follow <p> directly ("/a-b" sorts between "/a" and "/a/b").
  for (auto d = v.tree->lower_bound(prefix);
       d != v.tree->end() && d->first.compare(0, prefix.size(), prefix) == 0; ++d) {
    change.removed.emplace_back(d->first, d->second.perms);
  }
  for (const auto& [node, perms] : change.removed) {
    v.tree->erase(node);
    note_written(v, node);
  }
  note_written(v, parent_of(p));
  record_change(v, std::move(change));
}

std::optional<std::vector<std::string>> SimStore::directory(ConnId conn, TxId tx, const std::string& path) {
  std::lock_guard lock(mu_);
  View v = view_locked(conn, tx);
  const std::string p = canonical(v.domid, path);
  touch(v, p);
  auto it = v.tree->find(p);
  if (it == v.tree->end()) {
    const int err = errno_from_parents(v, p, ENOENT, kRead);
    if (err == ENOENT) return std::nullopt;
    throw Error(err, "directory " + p);
  }
  if (!(perm_for(v.domid, it->second.perms) & kRead)) throw Error(EACCES, "directory " + p);
  std::vector<std::string> names;
  const std::string prefix = child_prefix(p);
  for (auto d = v.tree->lower_bound(prefix);
       d != v.tree->end() && d->first.compare(0, prefix.size(), prefix) == 0; ++d) {
    const std::string rest = d->first.substr(prefix.size());
    if (!rest.empty() && rest.find('/') == std::string::npos) names.push_back(rest);
  }
  return names;
}

std::vector<Permission> SimStore::get_permissions(ConnId conn, TxId tx, const std::string& path) {
  std::lock_guard lock(mu_);
  View v = view_locked(conn, tx);
  const std::string p = canonical(v.domid, path);
  touch(v, p);
  auto it = v.tree->find(p);
  if (it == v.tree->end()) throw Error(errno_from_parents(v, p, ENOENT, kRead), "get_permissions " + p);
  if (!(perm_for(v.domid, it->second.perms) & kRead)) throw Error(EACCES, "get_permissions " + p);
  return it->second.perms;
}

void SimStore::set_permissions(ConnId conn, TxId tx, const std::string& path,
                               const std::vector<Permission>& perms) {
  std::lock_guard lock(mu_);
  View v = view_locked(conn, tx);
  const std::string p = canonical(v.domid, path);
  if (perms.empty()) throw Error(EINVAL, "set_permissions " + p + ": no permissions");
  for (const auto& perm : perms) {
    if (access_bits(perm.access) == 0 && perm.access != Permission::Access::None) {
      throw Error(EINVAL, "set_permissions " + p + ": invalid access");
    }
  }
  touch(v, p);
  auto it = v.tree->find(p);
  if (it == v.tree->end()) throw Error(errno_from_parents(v, p, ENOENT, kWrite), "set_permissions " + p);
  if (!(perm_for(v.domid, it->second.perms) & kOwner)) throw Error(EACCES, "set_permissions " + p);
  // Unprivileged domains may not give their nodes away (xenstored: EPERM).
  if (v.domid != 0 && perms[0].domid != it->second.perms[0].domid) {
    throw Error(EPERM, "set_permissions " + p + ": only dom0 may change the owner");
  }
  Change change{p, perms, it->second.perms, {}};
  it->second.perms = perms;
  note_written(v, p);
  record_change(v, std::move(change));
}

// ------------------------------------------------------------------ watches

void SimStore::watch(ConnId conn, const std::string& path, const std::string& token) {
  std::lock_guard lock(mu_);
  Connection& c = conn_locked(conn);
  Watch w;
  if (!path.empty() && path[0] == '@') {
    if (!valid_chars(path) || path.find('/') != std::string::npos) throw Error(EINVAL, "watch " + path);
    w.path = path;
  } else {
    w.path = canonical(c.domid, path);
    w.relative = path[0] != '/';
  }
  if (token.find('\0') != std::string::npos) throw Error(EINVAL, "watch token with NUL");
  w.token = token;
  for (const auto& existing : c.watches) {
    if (existing.path == w.path && existing.token == token) throw Error(EEXIST, "watch " + path);
  }
  if (c.domid != 0 && c.watches.size() >= kMaxWatchesPerGuest) throw Error(E2BIG, "watch quota");
  c.watches.push_back(w);
  // xenstored fires every new watch once so the client can read initial state.
  queue_event_locked(c, w, w.path);
}

void SimStore::unwatch(ConnId conn, const std::string& path, const std::string& token) {
  std::lock_guard lock(mu_);
  Connection& c = conn_locked(conn);
  const std::string p = (!path.empty() && path[0] == '@') ? path : canonical(c.domid, path);
  for (auto it = c.watches.begin(); it != c.watches.end(); ++it) {
    if (it->path != p || it->token != token) continue;
    const Watch gone = *it;
    c.watches.erase(it);
    // Like libxenstore's XS_UNWATCH_FILTER: events of this watch still queued
    // are dropped, so nothing arrives for it after unwatch returns.
    const std::string report_dir =
        gone.relative ? gone.path.substr(home_of(c.domid).size() + 1) : gone.path;
    const bool was_nonempty = !c.queue.empty();
    std::erase_if(c.queue, [&](const WatchEvent& ev) {
      if (ev.token != token) return false;
      if (gone.path[0] == '@') return ev.path == gone.path;
      if (!gone.relative) return in_subtree(gone.path, ev.path);
      return ev.path == report_dir ||
             (ev.path.size() > report_dir.size() && ev.path.compare(0, report_dir.size(), report_dir) == 0 &&
              ev.path[report_dir.size()] == '/');
    });
    if (was_nonempty && c.queue.empty()) {
      uint64_t drained = 0;
      if (::read(c.event_fd.get(), &drained, sizeof drained) < 0 && errno != EAGAIN) {
        spdlog::warn("simulated xenstore: draining eventfd: {}", std::strerror(errno));
      }
    }
    return;
  }
  throw Error(ENOENT, "unwatch " + path + " " + token);
}

void SimStore::queue_event_locked(Connection& c, const Watch& w, const std::string& path) {
  std::string reported = path;
  if (w.relative) {
    const std::string home = home_of(c.domid) + "/";
    if (reported.compare(0, home.size(), home) == 0) reported = reported.substr(home.size());
  }
  if (c.queue.size() >= kMaxQueuedEvents) {
    spdlog::warn("simulated xenstore: dom{} is not reading its watch events; dropping {}", c.domid, reported);
    return;
  }
  const bool was_empty = c.queue.empty();
  c.queue.push_back(WatchEvent{std::move(reported), w.token});
  if (was_empty) {
    const uint64_t one = 1;
    if (::write(c.event_fd.get(), &one, sizeof one) < 0) {
      spdlog::warn("simulated xenstore: signalling eventfd: {}", std::strerror(errno));
    }
  }
}

void SimStore::fire_locked(const Change& change) {
  for (auto& [id, c] : conns_) {
    const bool visible = (perm_for(c.domid, change.perms) & kRead) ||
                         (!change.old_perms.empty() && (perm_for(c.domid, change.old_perms) & kRead));
    for (const Watch& w : c.watches) {
      if (w.path[0] == '@') continue;
      if (in_subtree(w.path, change.path)) {
        if (visible) queue_event_locked(c, w, change.path);
      } else if (!change.removed.empty() && in_subtree(change.path, w.path)) {
        // A watched node removed together with an ancestor.
        for (const auto& [node, perms] : change.removed) {
          if (node == w.path) {
            if (perm_for(c.domid, perms) & kRead) queue_event_locked(c, w, w.path);
            break;
          }
        }
      }
    }
  }
}

void SimStore::fire_special_locked(const std::string& name) {
  for (auto& [id, c] : conns_) {
    for (const Watch& w : c.watches) {
      if (w.path == name) queue_event_locked(c, w, name);
    }
  }
}

void SimStore::introduce_domain(DomId domid) {
  std::lock_guard lock(mu_);
  spdlog::debug("simulated xenstore: introducing dom{}", domid);
  fire_special_locked("@introduceDomain");
}

void SimStore::release_domain(DomId domid) {
  std::lock_guard lock(mu_);
  spdlog::debug("simulated xenstore: releasing dom{}", domid);
  fire_special_locked("@releaseDomain");
}

// -------------------------------------------------------------- transactions

TxId SimStore::transaction_start(ConnId conn) {
  std::lock_guard lock(mu_);
  conn_locked(conn);
  size_t mine = 0;
  for (const auto& [id, t] : txs_) mine += t.owner == conn;
  if (mine >= kMaxTransactionsPerConnection) throw Error(ENOSPC, "too many open transactions");
  TxId id = next_tx_++;
  if (id == xs::kNoTransaction) id = next_tx_++;  // wrapped: 0 means "no transaction"
  Transaction& t = txs_[id];
  t.owner = conn;
  t.start_generation = generation_;
  t.tree = tree_;
  return id;
}

bool SimStore::transaction_end(ConnId conn, TxId tx, bool commit) {
  std::lock_guard lock(mu_);
  conn_locked(conn);
  auto it = txs_.find(tx);
  if (it == txs_.end() || it->second.owner != conn) {
    throw Error(EINVAL, "simulated xenstore: unknown transaction " + std::to_string(tx));
  }
  Transaction t = std::move(it->second);
  txs_.erase(it);
  bool ok = true;
  if (commit) {
    for (const auto& p : t.touched) {
      auto changed = changed_at_.find(p);
      if (changed != changed_at_.end() && changed->second > t.start_generation) {
        ok = false;
        break;
      }
    }
    if (ok) {
      const View live{&tree_, nullptr, conns_.at(conn).domid};
      for (const auto& p : t.written) {
        auto node = t.tree.find(p);
        if (node != t.tree.end()) {
          tree_[p] = node->second;
        } else {
          tree_.erase(p);
        }
        note_written(live, p);
      }
      for (const auto& change : t.changes) fire_locked(change);
    }
  }
  prune_history_locked();
  return ok;
}

void SimStore::prune_history_locked() {
  // Change history only matters to open transactions.
  if (txs_.empty()) changed_at_.clear();
}

size_t SimStore::open_transactions() const {
  std::lock_guard lock(mu_);
  return txs_.size();
}

size_t SimStore::node_count() const {
  std::lock_guard lock(mu_);
  return tree_.size();
}

}  // namespace xbb::sim
