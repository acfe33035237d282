// A regular file (disk image) served through io_uring.
//
// - Never allocates: a sparse image stays sparse, holes read as zeros.
// - Size is the file size; it must be non-zero and a multiple of 512 (of the
//   logical block size with O_DIRECT).
// - Flush is fdatasync. Discard punches holes (PUNCH_HOLE|KEEP_SIZE); support is
//   probed at open by punching past end-of-file, which every filesystem that
//   implements hole punching accepts without touching data. Granularity is the
//   filesystem block size (st_blksize). No secure discard.
// - OpenOptions::direct_io opens with O_DIRECT; the logical block size is then
//   the file's direct-I/O alignment (statx STATX_DIOALIGN, else the backing
//   device's logical block size, else 512) and buffers must be aligned to it.
//   A filesystem that refuses O_DIRECT is an open error, not a silent fallback
//   to the page cache: the administrator asked for uncached I/O.
// - A file on tmpfs or ramfs is mapped read-only (MappedFile.hpp): its queues
//   read with memcpy where the file has pages, so a read costs no system call.
//   O_DIRECT changes nothing there; the page cache is the storage.
#pragma once

#include <memory>
#include <string>

#include "storage/file/MappedFile.hpp"
#include "storage/OpenOptions.hpp"
#include "storage/Storage.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::storage {

class FileStorage final : public Storage {
 public:
  // Throws StorageError with an administrator-readable reason.
  static std::unique_ptr<FileStorage> open(const std::string& path, const OpenOptions& options);

  const Properties& properties() const override { return properties_; }
  std::string describe() const override { return "file:" + path_; }
  std::unique_ptr<StorageQueue> open_queue(unsigned depth) override;
  // An OFD lock on the whole image (file/ImageClaim.hpp).
  std::unique_ptr<StorageClaim> claim(bool writable) const override;
  std::optional<uint64_t> current_size() const override;

  bool direct_io() const { return direct_io_; }

 private:
  FileStorage(std::string path, UniqueFd fd, Properties properties, bool direct_io);

  std::string path_;
  UniqueFd fd_;
  std::unique_ptr<MappedFile> mapped_;  // tmpfs/ramfs only; outlives the queues like fd_
  Properties properties_;
  bool direct_io_;
};

}  // namespace xbb::storage
