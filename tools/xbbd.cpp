// xbbd: the user-space Xen block backend daemon, on real Xen.
#include "ring/ports/XenHypervisor.hpp"
#include "tools/XbbdMain.hpp"
#include "xenstore/XsXenStore.hpp"

int main(int argc, char** argv) {
  xbb::tools::Adapters adapters;
  adapters.open_hypervisor = [] { return std::unique_ptr<xbb::ports::Hypervisor>(xbb::ports::XenHypervisor::open()); };
  adapters.open_xenstore = [] { return std::unique_ptr<xbb::xs::XenStore>(new xbb::xs::XsXenStore()); };
  return xbb::tools::xbbd_main(argc, argv, adapters);
}
