// Xenstore half of SimParts.hpp: includes only tests/sim/xenstore headers.
#include "tests/frontend/SimParts.hpp"
#include "tests/sim/xenstore/SimStore.hpp"
#include "tests/sim/xenstore/SimStoreClient.hpp"
#include "tests/sim/xenstore/SimStoreServer.hpp"
#include "tests/sim/xenstore/SimXenStore.hpp"

namespace xbb::frontend::parts {

std::shared_ptr<sim::SimStore> make_store() { return std::make_shared<sim::SimStore>(); }

std::unique_ptr<xs::XenStore> connect_store(std::shared_ptr<sim::SimStore> store, xs::DomId domid) {
  return std::make_unique<sim::SimXenStore>(std::move(store), domid);
}

std::unique_ptr<xs::XenStore> connect_store_socket(const std::string& store_socket, xs::DomId domid) {
  return std::make_unique<sim::SimStoreClient>(store_socket, domid);
}

std::shared_ptr<void> serve_store(std::shared_ptr<sim::SimStore> store, const std::string& store_socket) {
  auto server = std::make_shared<sim::SimStoreServer>(std::move(store), store_socket);
  server->start();
  return server;
}

void introduce_domain(sim::SimStore& store, xs::DomId domid) { store.introduce_domain(domid); }
void release_domain(sim::SimStore& store, xs::DomId domid) { store.release_domain(domid); }
size_t open_transactions(const sim::SimStore& store) { return store.open_transactions(); }

}  // namespace xbb::frontend::parts
