#include "storage/snapshot/CowOriginRegistry.hpp"

namespace xbb::storage {

OriginRegistry& OriginRegistry::instance() {
  static OriginRegistry registry;
  return registry;
}

void OriginRegistry::add(const std::string& name, const std::shared_ptr<CowOriginStorage>& origin) {
  std::lock_guard lock(mutex_);
  origins_[name] = origin;
}

void OriginRegistry::remove(const std::string& name) {
  std::lock_guard lock(mutex_);
  origins_.erase(name);
}

std::shared_ptr<CowOriginStorage> OriginRegistry::find(const std::string& name) const {
  std::lock_guard lock(mutex_);
  auto it = origins_.find(name);
  return it == origins_.end() ? nullptr : it->second.lock();
}

std::shared_ptr<CowOriginStorage> OriginRegistry::origin_of_image(
    const std::string& identity, const std::function<std::shared_ptr<CowOriginStorage>()>& make, bool& created) {
  std::lock_guard lock(mutex_);
  std::erase_if(by_image_, [](const auto& entry) { return entry.second.expired(); });
  if (auto it = by_image_.find(identity); it != by_image_.end()) {
    if (auto live = it->second.lock()) {
      created = false;
      return live;
    }
  }
  auto origin = make();
  by_image_[identity] = origin;
  created = true;
  return origin;
}

void OriginRegistry::set_origin_of_image(const std::string& identity, const std::shared_ptr<CowOriginStorage>& origin) {
  std::lock_guard lock(mutex_);
  by_image_[identity] = origin;
}

std::vector<std::string> OriginRegistry::names() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  for (const auto& [name, origin] : origins_)
    if (!origin.expired()) out.push_back(name);
  return out;
}

}  // namespace xbb::storage
