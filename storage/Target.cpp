#include "storage/Target.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <mutex>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "storage/DeviceStorage.hpp"
#include "storage/FileStorage.hpp"
#include "storage/NbdStorage.hpp"
#include "storage/OpenError.hpp"
#include "storage/RamStorage.hpp"
#include "storage/SizeParser.hpp"

namespace xbb::storage {
namespace {

bool is_kind_name(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

std::string require_path(const std::string& kind, const std::string& path) {
  if (path.empty()) throw StorageError(fmt::format("{}: no path given ({}:PATH)", kind, kind));
  return path;
}

std::unique_ptr<Storage> open_ram(const std::string& argument, const OpenOptions& options) {
  const auto colon = argument.find(':');
  const std::string size_text = argument.substr(0, colon);
  const std::string image = colon == std::string::npos ? "" : argument.substr(colon + 1);
  if (colon != std::string::npos && image.empty())
    throw StorageError("ram: the image path after the second ':' is empty (ram:SIZE:IMAGE)");
  uint64_t size = 0;
  if (size_text.empty() || size_text == "auto") {
    if (image.empty())
      throw StorageError("ram: no size given (ram:SIZE, e.g. ram:64M, or ram:auto:IMAGE to size it to an image)");
  } else if (auto parsed = parse_size(size_text)) {
    size = *parsed;
    if (size == 0) throw StorageError("ram: the size must not be zero");
  } else {
    throw StorageError(fmt::format(
        "ram: size '{}' is not a size (use digits with an optional K, M, G or T suffix, e.g. ram:64M)", size_text));
  }
  return RamStorage::create(size, image, options);
}

std::unique_ptr<Storage> open_plain_path(const std::string& path, const OpenOptions& options) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw open_error("target", path, errno, !options.read_only);
  if (S_ISREG(st.st_mode)) return FileStorage::open(path, options);
  if (S_ISBLK(st.st_mode)) return DeviceStorage::open(path, options);
  throw StorageError(
      fmt::format("target: '{}' is {}; expected a disk image file or a block device", path, describe_file_type(st.st_mode)));
}

class Registry {
 public:
  Registry() {
    kinds_["file"] = [](const std::string& a, const OpenOptions& o) {
      return std::unique_ptr<Storage>(FileStorage::open(require_path("file", a), o));
    };
    kinds_["dev"] = [](const std::string& a, const OpenOptions& o) {
      return std::unique_ptr<Storage>(DeviceStorage::open(require_path("dev", a), o));
    };
    kinds_["ram"] = open_ram;
    kinds_["nbd"] = open_nbd_target;
  }
  void add(const std::string& name, KindFactory factory) {
    std::lock_guard lock(mutex_);
    kinds_[name] = std::move(factory);
  }
  KindFactory find(const std::string& name) {
    std::lock_guard lock(mutex_);
    auto it = kinds_.find(name);
    return it == kinds_.end() ? KindFactory{} : it->second;
  }
  std::vector<std::string> names() {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    for (const auto& [name, factory] : kinds_) out.push_back(name);
    return out;  // std::map keeps them sorted
  }

 private:
  std::mutex mutex_;
  std::map<std::string, KindFactory> kinds_;
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
  return open_plain_path(target, options);
}

}  // namespace xbb::storage
