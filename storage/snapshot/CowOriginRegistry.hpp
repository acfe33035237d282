// The process-wide directory of origins the daemon serves, by name, so a
// "snapshot:ORIGIN:STORE" target can find the CowOriginStorage whose snapshot
// it presents. The daemon adds each disk when it starts serving it (e.g. as
// "3/xvda") and removes it when it stops; entries are weak, so a forgotten
// removal never keeps a disk alive.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "storage/snapshot/CowOriginStorage.hpp"

namespace xbb::storage {

class OriginRegistry {
 public:
  static OriginRegistry& instance();

  // Thread-safe. add() replaces an entry of the same name.
  void add(const std::string& name, const std::shared_ptr<CowOriginStorage>& origin);
  void remove(const std::string& name);
  // Null when unknown or no longer served.
  std::shared_ptr<CowOriginStorage> find(const std::string& name) const;
  std::vector<std::string> names() const;  // live entries, sorted

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::weak_ptr<CowOriginStorage>> origins_;
};

}  // namespace xbb::storage
