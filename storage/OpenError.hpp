// Turns an errno from opening a target into a StorageError an administrator
// can act on, e.g. "file: '/x.img' does not exist".
#pragma once

#include <string>

#include "storage/Storage.hpp"

namespace xbb::storage {

// `kind` prefixes the message ("file", "dev", "ram image"); `for_write` says
// whether write access was requested, to suggest a read-only attach.
StorageError open_error(const std::string& kind, const std::string& path, int error, bool for_write);

// What a stat() mode is, in words: "a directory", "a character device"...
std::string describe_file_type(unsigned mode);

}  // namespace xbb::storage
