// The three XenStore adapters the contract suite runs against, all backed by
// one SimStore so tests can also drive it directly (special watches):
//  - InProcessAdapter: SimXenStore connections;
//  - SocketAdapter:    SimStoreClient over a SimStoreServer socket;
//  - LibxenstoreAdapter: the production XsXenStore (libxenstore) pointed at
//    the SimStoreServer via XENSTORED_PATH. libxenstore has no way to name a
//    guest domain, so guest connections there use SimStoreClient.
#pragma once

#include <stdlib.h>

#include <memory>

#include "tests/sim/xenstore/SimStore.hpp"
#include "tests/sim/xenstore/SimStoreClient.hpp"
#include "tests/sim/xenstore/SimStoreServer.hpp"
#include "tests/sim/xenstore/SimXenStore.hpp"
#include "tests/xenstore/XenstoreTestSupport.hpp"
#include "xenstore/XsXenStore.hpp"

namespace xbb::xs::testing {

struct InProcessAdapter {
  std::shared_ptr<sim::SimStore> store = std::make_shared<sim::SimStore>();
  std::unique_ptr<XenStore> dom0() { return std::make_unique<sim::SimXenStore>(store, 0); }
  std::unique_ptr<XenStore> guest(DomId d) { return std::make_unique<sim::SimXenStore>(store, d); }
};

struct SocketAdapter {
  std::shared_ptr<sim::SimStore> store = std::make_shared<sim::SimStore>();
  TempDir dir;
  sim::SimStoreServer server{store, dir.socket()};
  SocketAdapter() { server.start(); }
  std::unique_ptr<XenStore> dom0() { return std::make_unique<sim::SimStoreClient>(dir.socket(), 0); }
  std::unique_ptr<XenStore> guest(DomId d) { return std::make_unique<sim::SimStoreClient>(dir.socket(), d); }
};

struct LibxenstoreAdapter {
  std::shared_ptr<sim::SimStore> store = std::make_shared<sim::SimStore>();
  TempDir dir;
  sim::SimStoreServer server{store, dir.socket()};
  LibxenstoreAdapter() { server.start(); }
  std::unique_ptr<XenStore> dom0() {
    // libxenstore reads XENSTORED_PATH on every xs_open(); tests run serially.
    ::setenv("XENSTORED_PATH", dir.socket().c_str(), 1);
    return std::make_unique<XsXenStore>();
  }
  std::unique_ptr<XenStore> guest(DomId d) { return std::make_unique<sim::SimStoreClient>(dir.socket(), d); }
};

}  // namespace xbb::xs::testing
