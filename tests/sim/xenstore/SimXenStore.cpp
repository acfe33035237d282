#include "tests/sim/xenstore/SimXenStore.hpp"

namespace xbb::sim {

SimXenStore::SimXenStore(std::shared_ptr<SimStore> store, DomId domid)
    : store_(std::move(store)), domid_(domid), conn_(store_->connect(domid)), watch_fd_(store_->event_fd(conn_)) {}

SimXenStore::~SimXenStore() { store_->disconnect(conn_); }

std::optional<std::string> SimXenStore::read(TxId tx, const std::string& path) {
  return store_->read(conn_, tx, path);
}
void SimXenStore::write(TxId tx, const std::string& path, const std::string& value) {
  store_->write(conn_, tx, path, value);
}
void SimXenStore::mkdir(TxId tx, const std::string& path) { store_->mkdir(conn_, tx, path); }
void SimXenStore::rm(TxId tx, const std::string& path) { store_->rm(conn_, tx, path); }
std::optional<std::vector<std::string>> SimXenStore::directory(TxId tx, const std::string& path) {
  return store_->directory(conn_, tx, path);
}
std::vector<Permission> SimXenStore::get_permissions(TxId tx, const std::string& path) {
  return store_->get_permissions(conn_, tx, path);
}
void SimXenStore::set_permissions(TxId tx, const std::string& path, const std::vector<Permission>& perms) {
  store_->set_permissions(conn_, tx, path, perms);
}
void SimXenStore::watch(const std::string& path, const std::string& token) { store_->watch(conn_, path, token); }
void SimXenStore::unwatch(const std::string& path, const std::string& token) {
  store_->unwatch(conn_, path, token);
}
int SimXenStore::watch_fd() const { return watch_fd_; }
std::optional<WatchEvent> SimXenStore::read_watch() { return store_->pop_event(conn_); }
TxId SimXenStore::transaction_start() { return store_->transaction_start(conn_); }
bool SimXenStore::transaction_end(TxId tx, bool commit) { return store_->transaction_end(conn_, tx, commit); }

}  // namespace xbb::sim
