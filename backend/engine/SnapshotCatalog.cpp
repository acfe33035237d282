#include "backend/engine/SnapshotCatalog.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "storage/UniqueFd.hpp"

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

namespace {

// JSON strings are UTF-8; a path need not be (Linux allows any bytes but
// '/' and NUL). Such a name cannot be recorded, and must not be kept in
// memory either, or every later save would fail on it.
std::optional<std::string> not_recordable(const std::string& what, const std::string& text) {
  try {
    (void)nlohmann::json(text).dump();
    return std::nullopt;
  } catch (const nlohmann::json::exception&) {
    return "the " + what + " is not valid UTF-8, which the snapshot catalog (JSON) cannot record";
  }
}

}  // namespace

std::optional<std::string> SnapshotCatalog::add(const std::string& origin, const std::string& store) {
  if (auto error = not_recordable("origin name", origin)) return error;
  if (auto error = not_recordable("store path", store)) return error;
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
  // Durable before it counts: the new contents reach the disk before the
  // rename, and the rename before we report success (a crash right after a
  // snapshot is taken must not lose the record that re-attaches it).
  std::string text;
  try {
    text = j.dump(2) + "\n";
  } catch (const nlohmann::json::exception& e) {
    return "cannot write the snapshot catalog " + path_ + ": " + e.what();
  }
  const std::string tmp = path_ + ".tmp";
  storage::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return "cannot write " + tmp + ": " + std::strerror(errno);
  for (size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return "cannot write " + tmp + ": " + std::strerror(errno);
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return "cannot sync " + tmp + ": " + std::strerror(errno);
  fd.reset();
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) return "cannot replace " + path_ + ": " + std::strerror(errno);
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  storage::UniqueFd dir_fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd || ::fsync(dir_fd.get()) != 0) return "cannot sync the directory of " + path_ + ": " + std::strerror(errno);
  return std::nullopt;
}

}  // namespace xbb::backend
