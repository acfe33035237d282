// The body of xbbd, parameterised by where it finds Xen.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ring/ports/GuestMemory.hpp"
#include "xenstore/XenStore.hpp"

namespace xbb::tools {

struct Adapters {
  std::function<std::unique_ptr<ports::Hypervisor>()> open_hypervisor;
  std::function<std::unique_ptr<xs::XenStore>()> open_xenstore;
  bool refuse_if_blkback_loaded = true;
  // Arguments a per-disk process needs before xbbd's own (the simulation's
  // --sim-* options); the real daemon needs none.
  std::vector<std::string> child_args;
};

int xbbd_main(int argc, char** argv, const Adapters& adapters);

}  // namespace xbb::tools
