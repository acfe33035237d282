// The real XenStore adapter: libxenstore (xs_open) talking to xenstored over
// its unix socket, or /dev/xen/xenbus when no socket exists. libxenstore
// honours XENSTORED_PATH for the socket path, which is how the tests point it
// at the simulated store server.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "xenstore/XenStore.hpp"

struct xs_handle;

namespace xbb::xs {

class XsXenStore final : public XenStore {
 public:
  // Opens a connection (xs_open(0)); throws Error with errno on failure.
  XsXenStore();
  ~XsXenStore() override;
  XsXenStore(const XsXenStore&) = delete;
  XsXenStore& operator=(const XsXenStore&) = delete;

  std::optional<std::string> read(TxId tx, const std::string& path) override;
  void write(TxId tx, const std::string& path, const std::string& value) override;
  void mkdir(TxId tx, const std::string& path) override;
  void rm(TxId tx, const std::string& path) override;
  std::optional<std::vector<std::string>> directory(TxId tx, const std::string& path) override;
  std::vector<Permission> get_permissions(TxId tx, const std::string& path) override;
  void set_permissions(TxId tx, const std::string& path, const std::vector<Permission>& perms) override;

  void watch(const std::string& path, const std::string& token) override;
  void unwatch(const std::string& path, const std::string& token) override;
  int watch_fd() const override;
  std::optional<WatchEvent> read_watch() override;

  TxId transaction_start() override;
  bool transaction_end(TxId tx, bool commit) override;

 private:
  struct Closer {
    void operator()(xs_handle* h) const;
  };
  std::unique_ptr<xs_handle, Closer> handle_;
  int watch_fd_ = -1;
};

}  // namespace xbb::xs
