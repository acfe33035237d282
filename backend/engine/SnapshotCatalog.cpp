#include "backend/engine/SnapshotCatalog.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

namespace xbb::backend {

SnapshotCatalog::SnapshotCatalog(std::string path) : path_(std::move(path)) {}

std::optional<std::string> SnapshotCatalog::load() {
  stores_.clear();
  if (path_.empty()) return std::nullopt;
  std::ifstream in(path_);
  if (!in) {
    if (errno == ENOENT) return std::nullopt;
    return "cannot read the snapshot catalog " + path_ + ": " + std::strerror(errno);
  }
  try {
    const auto j = nlohmann::json::parse(in);
    for (const auto& [origin, stores] : j.at("origins").items()) {
      for (const auto& store : stores) stores_[origin].push_back(store.get<std::string>());
    }
  } catch (const std::exception& e) {
    stores_.clear();
    return "the snapshot catalog " + path_ + " is malformed: " + e.what();
  }
  return std::nullopt;
}

std::vector<std::string> SnapshotCatalog::stores_of(const std::string& origin) const {
  auto it = stores_.find(origin);
  return it == stores_.end() ? std::vector<std::string>{} : it->second;
}

std::optional<std::string> SnapshotCatalog::add(const std::string& origin, const std::string& store) {
  auto& stores = stores_[origin];
  if (std::find(stores.begin(), stores.end(), store) == stores.end()) stores.push_back(store);
  return save();
}

std::optional<std::string> SnapshotCatalog::remove(const std::string& origin, const std::string& store) {
  auto it = stores_.find(origin);
  if (it == stores_.end()) return std::nullopt;
  std::erase(it->second, store);
  if (it->second.empty()) stores_.erase(it);
  return save();
}

std::optional<std::string> SnapshotCatalog::save() const {
  if (path_.empty()) return std::nullopt;
  nlohmann::json j;
  j["origins"] = nlohmann::json::object();
  for (const auto& [origin, stores] : stores_) j["origins"][origin] = stores;
  const std::string tmp = path_ + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return "cannot write " + tmp + ": " + std::strerror(errno);
    out << j.dump(2) << "\n";
    out.flush();
    if (!out) return "cannot write " + tmp + ": " + std::strerror(errno);
  }
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) return "cannot replace " + path_ + ": " + std::strerror(errno);
  return std::nullopt;
}

}  // namespace xbb::backend
