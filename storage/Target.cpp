#include "storage/Target.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <mutex>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "storage/OpenError.hpp"

namespace xbb::storage {
namespace {

bool is_kind_name(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

class Registry {
 public:
  Registry() { add_builtin_kinds(table_); }
  void add(const std::string& name, KindFactory factory) {
    std::lock_guard lock(mutex_);
    table_.kinds[name] = std::move(factory);
  }
  KindFactory find(const std::string& name) {
    std::lock_guard lock(mutex_);
    auto it = table_.kinds.find(name);
    return it == table_.kinds.end() ? KindFactory{} : it->second;
  }
  KindFactory plain_path() {
    std::lock_guard lock(mutex_);
    return table_.plain_path;
  }
  std::vector<std::string> names() {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    for (const auto& [name, factory] : table_.kinds) out.push_back(name);
    return out;  // std::map keeps them sorted
  }

 private:
  std::mutex mutex_;
  KindTable table_;
};

Registry& registry() {
  static Registry instance;
  return instance;
}

}  // namespace

void register_kind(const std::string& name, KindFactory factory) {
  if (!is_kind_name(name)) throw std::invalid_argument(fmt::format("'{}' is not a storage kind name", name));
  if (!factory) throw std::invalid_argument(fmt::format("storage kind '{}' has no factory", name));
  registry().add(name, std::move(factory));
}

std::vector<std::string> registered_kinds() { return registry().names(); }

std::unique_ptr<Storage> open_target(const std::string& target, const OpenOptions& options) {
  if (target.empty()) throw StorageError("target: empty target (expected PATH, file:PATH, dev:PATH or ram:SIZE)");
  const auto colon = target.find(':');
  if (colon != std::string::npos) {
    const std::string kind = target.substr(0, colon);
    if (KindFactory factory = registry().find(kind)) {
      std::unique_ptr<Storage> storage = factory(target.substr(colon + 1), options);
      if (!storage) throw StorageError(fmt::format("{}: the storage kind returned nothing for '{}'", kind, target));
      return storage;
    }
    struct stat st {};
    if (is_kind_name(kind) && ::stat(target.c_str(), &st) != 0)
      throw StorageError(fmt::format("target: unknown storage kind '{}' in '{}' (known kinds: {})", kind, target,
                                     fmt::join(registered_kinds(), ", ")));
  }
  KindFactory plain_path = registry().plain_path();
  if (!plain_path) throw StorageError(fmt::format("target: '{}' names no kind, and no storage kind opens plain paths", target));
  return plain_path(target, options);
}

}  // namespace xbb::storage
