// The process-wide directory of origins the daemon serves, by name, so a
// "snapshot:ORIGIN:STORE" target can find the CowOriginStorage whose snapshot
// it presents. The daemon adds each disk when it starts serving it (e.g. as
// "3/xvda") and removes it when it stops; entries are weak, so a forgotten
// removal never keeps a disk alive.
//
// It also keeps one origin per image: a snapshot served to another guest
// holds its origin after the disk itself is gone (a reboot, a detach), and
// when the image is served again it must be through that same origin, or a
// second one would attach the same stores: two copy-on-write threads writing
// one store, and snapshot reads through the first missing copies made by the
// second (data written after the snapshot).
#pragma once

#include <functional>
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

  // The live origin of the image `identity` (Storage::describe()), or a new
  // one from `make`, remembered for the next caller; `created` says which.
  // Thread-safe (storage is opened on helper threads).
  std::shared_ptr<CowOriginStorage> origin_of_image(const std::string& identity,
                                                    const std::function<std::shared_ptr<CowOriginStorage>()>& make,
                                                    bool& created);
  // Makes `origin` the image's origin (a reopened disk that has no snapshots).
  void set_origin_of_image(const std::string& identity, const std::shared_ptr<CowOriginStorage>& origin);

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::weak_ptr<CowOriginStorage>> origins_;
  std::map<std::string, std::weak_ptr<CowOriginStorage>> by_image_;
};

}  // namespace xbb::storage
