#include "storage/snapshot/SnapshotStore.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "storage/OpenError.hpp"
#include "storage/Storage.hpp"

namespace xbb::storage {
namespace {

int full_pwrite(int fd, const void* data, size_t length, uint64_t offset) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (length > 0) {
    const ssize_t n = ::pwrite(fd, p, length, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -EIO;
    p += n;
    length -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

int full_pread(int fd, void* data, size_t length, uint64_t offset) {
  auto* p = static_cast<uint8_t*>(data);
  while (length > 0) {
    const ssize_t n = ::pread(fd, p, length, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -EIO;  // short file: the store was truncated behind our back
    p += n;
    length -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

std::string parent_directory(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

StorageError store_error(const std::string& path, const std::string& what) {
  return StorageError(fmt::format("snapshot store '{}': {}", path, what));
}

}  // namespace

SnapshotStore::SnapshotStore(std::string path, UniqueFd fd, SnapshotHeader header)
    : path_(std::move(path)), fd_(std::move(fd)), header_(std::move(header)), next_free_(header_.data_offset) {}

namespace {

// One writer per store: two copy-on-write threads (two origin objects, or
// two xbbd processes) appending to one store would corrupt its map. An OFD
// lock on the whole file, held as long as the store is open.
void lock_store(const std::string& path, int fd) {
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (::fcntl(fd, F_OFD_SETLK, &lock) == 0) return;
  if (errno == EAGAIN || errno == EACCES)
    throw StorageInUse(fmt::format("snapshot store '{}' is in use by another origin or xbbd process", path));
  throw store_error(path, fmt::format("cannot lock it: {}", std::strerror(errno)));
}

}  // namespace

std::unique_ptr<SnapshotStore> SnapshotStore::create(const std::string& path, const std::string& origin_identity,
                                                     uint64_t origin_size, uint32_t cluster_size) {
  if (path.empty()) throw StorageError("snapshot store: no path given");
  if ((cluster_size & (cluster_size - 1)) != 0 || cluster_size < kMinSnapshotCluster ||
      cluster_size > kMaxSnapshotCluster)
    throw store_error(path, fmt::format("cluster size {} is not a power of two between {} and {}", cluster_size,
                                        kMinSnapshotCluster, kMaxSnapshotCluster));
  if (origin_size == 0 || origin_size % 512 != 0)
    throw store_error(path, fmt::format("origin size {} is not a non-zero multiple of 512", origin_size));
  if (origin_identity.size() > SnapshotHeader::kMaxIdentity)
    throw store_error(path, "the origin's identity is too long to record");

  SnapshotHeader header = SnapshotHeader::for_origin(origin_size, cluster_size, origin_identity);
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  header.created_sec = now.tv_sec;
  header.created_nsec = static_cast<uint32_t>(now.tv_nsec);
  if (::getrandom(header.uuid.data(), header.uuid.size(), 0) != static_cast<ssize_t>(header.uuid.size()))
    throw store_error(path, fmt::format("cannot draw a UUID: {}", std::strerror(errno)));
  header.uuid[6] = static_cast<uint8_t>((header.uuid[6] & 0x0f) | 0x40);  // RFC 4122 version 4
  header.uuid[8] = static_cast<uint8_t>((header.uuid[8] & 0x3f) | 0x80);

  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) {
    if (errno == EEXIST) throw store_error(path, "already exists (delete it or choose another path)");
    throw open_error("snapshot store", path, errno, true);
  }
  lock_store(path, fd.get());
  auto store = std::unique_ptr<SnapshotStore>(new SnapshotStore(path, std::move(fd), header));
  auto fail = [&](const std::string& what, int error) {
    ::unlink(path.c_str());
    return store_error(path, fmt::format("{}: {}", what, std::strerror(error)));
  };
  // The map is all zeros ("nothing copied"): extending the file makes it so
  // without writing it, and keeps it sparse.
  if (::ftruncate(store->fd_.get(), static_cast<off_t>(header.data_offset)) != 0) throw fail("cannot size the map", errno);
  if (int rc = store->write_header()) throw fail("cannot write the header", -rc);
  if (::fsync(store->fd_.get()) != 0) throw fail("cannot sync", errno);
  UniqueFd dir(::open(parent_directory(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) ::fsync(dir.get());  // the new name must survive a crash too
  return store;
}

std::unique_ptr<SnapshotStore> SnapshotStore::open(const std::string& path) {
  if (path.empty()) throw StorageError("snapshot store: no path given");
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) throw open_error("snapshot store", path, errno, true);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw store_error(path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw store_error(path, fmt::format("is {}, not a snapshot store file", describe_file_type(st.st_mode)));
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < SnapshotHeader::kHeaderSize) throw store_error(path, "too short to be a snapshot store");

  std::array<uint8_t, SnapshotHeader::kHeaderSize> raw{};
  if (int rc = full_pread(fd.get(), raw.data(), raw.size(), 0))
    throw store_error(path, fmt::format("cannot read the header: {}", std::strerror(-rc)));
  SnapshotHeader header;
  if (std::string why = decode_snapshot_header(raw, header); !why.empty()) throw store_error(path, why);
  if (file_size < header.data_offset) throw store_error(path, "truncated (the cluster map is incomplete)");

  auto store = std::unique_ptr<SnapshotStore>(new SnapshotStore(path, std::move(fd), header));
  // Scan the map: every entry must point at a whole, cluster-aligned copy
  // inside the file, and no two clusters may share a copy.
  store->copied_bitmap_.assign((header.cluster_count + 63) / 64, 0);
  std::vector<uint64_t> used;
  std::vector<uint64_t> chunk(8192);
  for (uint64_t first = 0; first < header.cluster_count; first += chunk.size()) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), header.cluster_count - first));
    if (int rc = full_pread(store->fd_.get(), chunk.data(), n * 8, header.map_offset + first * 8))
      throw store_error(path, fmt::format("cannot read the cluster map: {}", std::strerror(-rc)));
    for (size_t i = 0; i < n; ++i) {
      const uint64_t at = le64toh(chunk[i]);
      if (at == 0) continue;
      if (at < header.data_offset || at % header.cluster_size != 0 || at > file_size ||
          file_size - at < header.cluster_size)
        throw store_error(path, fmt::format("corrupt cluster map: cluster {} points at offset {}", first + i, at));
      store->copied_bitmap_[(first + i) / 64] |= uint64_t{1} << ((first + i) % 64);
      used.push_back(at);
      store->next_free_ = std::max(store->next_free_, at + header.cluster_size);
    }
  }
  std::sort(used.begin(), used.end());
  if (std::adjacent_find(used.begin(), used.end()) != used.end())
    throw store_error(path, "corrupt cluster map: two clusters share one copy");
  store->copied_at_open_ = used.size();
  return store;
}

void SnapshotStore::lock_for_writing() const { lock_store(path_, fd_.get()); }

void SnapshotStore::check_origin(const std::string& origin_identity, uint64_t origin_size) const {
  if (header_.origin_identity != origin_identity)
    throw store_error(path_, fmt::format("was taken of '{}', not of '{}'", header_.origin_identity, origin_identity));
  if (header_.origin_size != origin_size)
    throw store_error(path_, fmt::format("was taken of an origin of {} bytes, but '{}' now has {} bytes",
                                         header_.origin_size, origin_identity, origin_size));
}

int SnapshotStore::fault(StoreIo io) {
  std::lock_guard lock(hook_mutex_);
  return hook_ ? hook_(io) : 0;
}

void SnapshotStore::set_fault_hook(StoreFaultHook hook) {
  std::lock_guard lock(hook_mutex_);
  hook_ = std::move(hook);
}

int SnapshotStore::write_header() {
  if (int rc = fault(StoreIo::HeaderWrite)) return rc;
  std::array<uint8_t, SnapshotHeader::kHeaderSize> raw{};
  encode_snapshot_header(header_, raw);
  return full_pwrite(fd_.get(), raw.data(), raw.size(), 0);
}

int SnapshotStore::write_cluster(uint64_t cluster, const void* data, size_t length, uint64_t& store_offset) {
  if (cluster >= header_.cluster_count || length == 0 || length > header_.cluster_size) return -EINVAL;
  if (int rc = fault(StoreIo::DataWrite)) return rc;
  const uint64_t at = next_free_;
  if (int rc = full_pwrite(fd_.get(), data, length, at)) return rc;
  // A short last cluster still owns a whole cluster: extend so open()'s
  // "whole copy inside the file" check holds.
  if (length < header_.cluster_size && ::ftruncate(fd_.get(), static_cast<off_t>(at + header_.cluster_size)) != 0)
    return -errno;
  next_free_ = at + header_.cluster_size;
  store_offset = at;
  return 0;
}

int SnapshotStore::write_map_entry(uint64_t cluster, uint64_t store_offset) {
  if (cluster >= header_.cluster_count) return -EINVAL;
  if (int rc = fault(StoreIo::MapWrite)) return rc;
  const uint64_t entry = htole64(store_offset);
  return full_pwrite(fd_.get(), &entry, sizeof entry, header_.map_offset + cluster * 8);
}

int SnapshotStore::sync() {
  if (int rc = fault(StoreIo::Sync)) return rc;
  return ::fdatasync(fd_.get()) == 0 ? 0 : -errno;
}

int SnapshotStore::read_copied(uint64_t cluster, uint64_t offset_in_cluster, void* out, size_t length) {
  if (cluster >= header_.cluster_count || offset_in_cluster + length > header_.cluster_size) return -EINVAL;
  if (int rc = fault(StoreIo::Read)) return rc;
  uint64_t entry = 0;
  if (int rc = full_pread(fd_.get(), &entry, sizeof entry, header_.map_offset + cluster * 8)) return rc;
  const uint64_t at = le64toh(entry);
  if (at < header_.data_offset || at % header_.cluster_size != 0) return -EIO;
  return full_pread(fd_.get(), out, length, at + offset_in_cluster);
}

int SnapshotStore::mark_invalid(const std::string& reason) {
  std::lock_guard lock(header_mutex_);
  header_.state = SnapshotHeader::State::Invalid;
  header_.invalid_reason = reason.substr(0, SnapshotHeader::kMaxReason);
  if (int rc = write_header()) return rc;
  return ::fdatasync(fd_.get()) == 0 ? 0 : -errno;
}

}  // namespace xbb::storage
