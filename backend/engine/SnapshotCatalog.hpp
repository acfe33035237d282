// Which snapshot stores belong to which origin, kept in a small JSON file in
// xbbd's state directory so that snapshots are re-attached to their origin
// after a daemon restart, before the origin is written again. Origins are
// named by their storage identity (Storage::describe(), e.g.
// "file:/var/lib/xen/a.img"), which survives restarts; device names do not.
// Control thread only.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace xbb::backend {

class SnapshotCatalog {
 public:
  // An empty path keeps the catalog in memory only.
  explicit SnapshotCatalog(std::string path);

  // Loads the file; a missing file is an empty catalog. Returns an error
  // message for an unreadable or malformed file (the catalog is then empty).
  std::optional<std::string> load();
  std::vector<std::string> stores_of(const std::string& origin) const;
  // Both save at once (write a temporary file, then rename). Return an error message.
  std::optional<std::string> add(const std::string& origin, const std::string& store);
  std::optional<std::string> remove(const std::string& origin, const std::string& store);
  const std::string& path() const { return path_; }

 private:
  std::optional<std::string> save() const;

  std::string path_;
  std::map<std::string, std::vector<std::string>> stores_;
};

}  // namespace xbb::backend
