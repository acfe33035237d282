// The table the target registry fills with the built-in storage kinds.
//
// Each kind lives in its own folder (storage/file, storage/ram, storage/nbd,
// storage/snapshot) and adds itself here from one function,
// `void add_<folder>_kinds(KindTable&)`. storage/CMakeLists.txt names the
// folders (XBB_STORAGE_KINDS) and generates the one call site, so the registry
// (Target.cpp) includes no kind: adding a kind is a folder and a name in that list.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "storage/OpenOptions.hpp"
#include "storage/Storage.hpp"

namespace xbb::storage {

// Receives the text after "KIND:". Throws StorageError on failure.
using KindFactory = std::function<std::unique_ptr<Storage>(const std::string& argument, const OpenOptions& options)>;

struct KindTable {
  std::map<std::string, KindFactory> kinds;  // by name, sorted
  // Opens a target written without a kind (a plain path); set by the file kind.
  KindFactory plain_path;
};

// Calls every built-in kind's add function (generated: BuiltinKinds.cpp.in).
void add_builtin_kinds(KindTable& table);

}  // namespace xbb::storage
