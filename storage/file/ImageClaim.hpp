// Claims on images and block devices (Storage::claim for the file kinds).
//
// - A regular file gets an open file description lock (F_OFD_SETLK) over the
//   whole file: a write lock for a writable disk, a read lock for a read-only
//   one. OFD locks are what QEMU's image locking uses, so QEMU (and other
//   programs that honour them) see xbbd's disks, and xbbd sees theirs. Unlike
//   POSIX record locks they belong to the open file description, not the
//   process, so two disks of one xbbd on one image conflict too.
// - A block device for a writable disk is opened with O_EXCL: the kernel then
//   refuses it while it is mounted or claimed by another exclusive opener
//   (another xbbd disk, device-mapper, md, a filesystem). Read-only disks on
//   block devices claim nothing: O_EXCL knows no shared mode.
//
// The claim opens the path again and checks that it reaches the same file as
// the storage's own descriptor (`expected`), so a path replaced in between
// cannot be claimed instead of the image actually served.
#pragma once

#include <sys/stat.h>

#include <memory>
#include <string>

#include "storage/Storage.hpp"

namespace xbb::storage {

// `kind` names the target kind in messages ("file", "dev").
std::unique_ptr<StorageClaim> claim_image_file(const std::string& kind, const std::string& path,
                                               const struct stat& expected, bool writable);
std::unique_ptr<StorageClaim> claim_block_device(const std::string& kind, const std::string& path,
                                                 const struct stat& expected, bool writable);

}  // namespace xbb::storage
