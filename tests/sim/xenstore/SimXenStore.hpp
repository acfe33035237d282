// One connection to a SimStore, seen through the XenStore port: what the
// daemon (as dom0) or a simulated guest (as domU) holds in tests.
#pragma once

#include <memory>

#include "tests/sim/xenstore/SimStore.hpp"
#include "xenstore/XenStore.hpp"

namespace xbb::sim {

class SimXenStore final : public xs::XenStore {
 public:
  SimXenStore(std::shared_ptr<SimStore> store, DomId domid);
  ~SimXenStore() override;
  SimXenStore(const SimXenStore&) = delete;
  SimXenStore& operator=(const SimXenStore&) = delete;

  DomId domid() const { return domid_; }
  SimStore& store() { return *store_; }

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
  std::shared_ptr<SimStore> store_;
  DomId domid_;
  SimStore::ConnId conn_;
  int watch_fd_;
};

}  // namespace xbb::sim
