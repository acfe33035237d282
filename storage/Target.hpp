// Opens storage from an administrator-written target string (xenstore
// `params`, the command line, a config file).
//
// Syntax:
//   PATH              a regular file (disk image) or a block device, told apart
//                     with stat(); anything else (a directory, a FIFO...) is an
//                     error that says what PATH is
//   file:PATH         a regular file                    (file/FileStorage.hpp)
//   dev:PATH          a block device                    (file/DeviceStorage.hpp)
//   ram:SIZE          an empty RAM disk of SIZE bytes   (ram/RamStorage.hpp)
//   ram:SIZE:IMAGE    a RAM disk of SIZE bytes preloaded with the file IMAGE,
//                     which must not be larger than SIZE
//   ram::IMAGE        a RAM disk sized to IMAGE (rounded up to 512 bytes);
//   ram:auto:IMAGE    the same, spelled out
//   KIND:ARGUMENT     any kind added with register_kind()
// SIZE is decimal digits with an optional binary suffix K, M, G or T (64M is
// 64 MiB) and must be a multiple of 512. Only the first ':' selects the kind,
// and only when the text before it is a kind name (lowercase letters, digits,
// '-', '_'), so "/srv/a:b.img" is a plain path; an unregistered kind name is an
// error unless a file of that exact name exists.
//
// The built-in kinds add themselves from their folders (KindTable.hpp); a
// program can add more at start-up:
//   storage::register_kind("nbd", [](const std::string& uri, const OpenOptions& o) {
//     return NbdStorage::open(uri, o);
//   });
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "storage/KindTable.hpp"
#include "storage/OpenOptions.hpp"
#include "storage/Storage.hpp"

namespace xbb::storage {

// Adds (or replaces) a kind. Thread-safe. Throws std::invalid_argument for a
// name that is not a kind name or a null factory.
void register_kind(const std::string& name, KindFactory factory);

// Registered kind names, sorted ("dev", "file", "nbd", "ram", "snapshot" are built in).
std::vector<std::string> registered_kinds();

// Opens `target`; throws StorageError with a message an administrator can act on.
std::unique_ptr<Storage> open_target(const std::string& target, const OpenOptions& options);

}  // namespace xbb::storage
