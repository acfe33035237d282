#include "xenstore/XsXenStore.hpp"

// libxenstore's headers have no extern "C" guards of their own.
extern "C" {
#include <xenstore.h>
}

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

namespace xbb::xs {
namespace {

// libxenstore returns malloc()ed results.
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
template <class T>
using Malloced = std::unique_ptr<T, FreeDeleter>;

[[noreturn]] void fail(const char* op, const std::string& path) {
  const int err = errno ? errno : EIO;
  throw Error(err, std::string("xenstore ") + op + " " + path);
}

unsigned int to_xs_perm(Permission::Access access) {
  switch (access) {
    case Permission::Access::None: return XS_PERM_NONE;
    case Permission::Access::Read: return XS_PERM_READ;
    case Permission::Access::Write: return XS_PERM_WRITE;
    case Permission::Access::Both: return XS_PERM_READ | XS_PERM_WRITE;
  }
  return XS_PERM_NONE;
}

Permission::Access from_xs_perm(unsigned int perms) {
  const bool r = perms & XS_PERM_READ;
  const bool w = perms & XS_PERM_WRITE;
  if (r && w) return Permission::Access::Both;
  if (r) return Permission::Access::Read;
  if (w) return Permission::Access::Write;
  return Permission::Access::None;
}

}  // namespace

void XsXenStore::Closer::operator()(xs_handle* h) const { xs_close(h); }

XsXenStore::XsXenStore() {
  errno = 0;
  handle_.reset(xs_open(0));
  if (!handle_) fail("open", "");
  // xs_fileno lazily creates the watch pipe; do it now so watch_fd() can be
  // const and never fails later.
  watch_fd_ = xs_fileno(handle_.get());
  if (watch_fd_ < 0) fail("fileno", "");
}

XsXenStore::~XsXenStore() = default;

std::optional<std::string> XsXenStore::read(TxId tx, const std::string& path) {
  unsigned int len = 0;
  errno = 0;
  Malloced<char> value(static_cast<char*>(xs_read(handle_.get(), tx, path.c_str(), &len)));
  if (!value) {
    if (errno == ENOENT) return std::nullopt;
    fail("read", path);
  }
  return std::string(value.get(), len);
}

void XsXenStore::write(TxId tx, const std::string& path, const std::string& value) {
  errno = 0;
  if (!xs_write(handle_.get(), tx, path.c_str(), value.data(), static_cast<unsigned int>(value.size()))) {
    fail("write", path);
  }
}

void XsXenStore::mkdir(TxId tx, const std::string& path) {
  errno = 0;
  if (!xs_mkdir(handle_.get(), tx, path.c_str())) fail("mkdir", path);
}

void XsXenStore::rm(TxId tx, const std::string& path) {
  errno = 0;
  if (!xs_rm(handle_.get(), tx, path.c_str())) {
    if (errno == ENOENT) return;  // already gone: the caller's goal is met
    fail("rm", path);
  }
}

std::optional<std::vector<std::string>> XsXenStore::directory(TxId tx, const std::string& path) {
  unsigned int num = 0;
  errno = 0;
  Malloced<char*> entries(xs_directory(handle_.get(), tx, path.c_str(), &num));
  if (!entries) {
    if (errno == ENOENT) return std::nullopt;
    fail("directory", path);
  }
  std::vector<std::string> names;
  names.reserve(num);
  for (unsigned int i = 0; i < num; ++i) names.emplace_back(entries.get()[i]);
  return names;
}

std::vector<Permission> XsXenStore::get_permissions(TxId tx, const std::string& path) {
  unsigned int num = 0;
  errno = 0;
  Malloced<xs_permissions> perms(xs_get_permissions(handle_.get(), tx, path.c_str(), &num));
  if (!perms) fail("get_permissions", path);
  std::vector<Permission> out;
  out.reserve(num);
  for (unsigned int i = 0; i < num; ++i) {
    const auto& p = perms.get()[i];
    out.push_back(Permission{static_cast<DomId>(p.id), from_xs_perm(p.perms)});
  }
  return out;
}

void XsXenStore::set_permissions(TxId tx, const std::string& path, const std::vector<Permission>& perms) {
  std::vector<xs_permissions> raw;
  raw.reserve(perms.size());
  for (const auto& p : perms) raw.push_back(xs_permissions{p.domid, to_xs_perm(p.access)});
  errno = 0;
  if (!xs_set_permissions(handle_.get(), tx, path.c_str(), raw.data(), static_cast<unsigned int>(raw.size()))) {
    fail("set_permissions", path);
  }
}

void XsXenStore::watch(const std::string& path, const std::string& token) {
  errno = 0;
  if (!xs_watch(handle_.get(), path.c_str(), token.c_str())) fail("watch", path);
}

void XsXenStore::unwatch(const std::string& path, const std::string& token) {
  errno = 0;
  if (!xs_unwatch(handle_.get(), path.c_str(), token.c_str())) fail("unwatch", path);
}

int XsXenStore::watch_fd() const { return watch_fd_; }

std::optional<WatchEvent> XsXenStore::read_watch() {
  errno = 0;
  Malloced<char*> event(xs_check_watch(handle_.get()));
  if (!event) {
    if (errno == EAGAIN) return std::nullopt;
    fail("read_watch", "");
  }
  return WatchEvent{event.get()[XS_WATCH_PATH], event.get()[XS_WATCH_TOKEN]};
}

TxId XsXenStore::transaction_start() {
  errno = 0;
  const xs_transaction_t tx = xs_transaction_start(handle_.get());
  if (tx == XBT_NULL) fail("transaction_start", "");
  return tx;
}

bool XsXenStore::transaction_end(TxId tx, bool commit) {
  errno = 0;
  if (xs_transaction_end(handle_.get(), tx, /*abort=*/!commit)) return true;
  if (commit && errno == EAGAIN) {
    spdlog::debug("xenstore: transaction {} conflicted, to be retried", tx);
    return false;
  }
  fail(commit ? "transaction commit" : "transaction abort", "");
}

}  // namespace xbb::xs
