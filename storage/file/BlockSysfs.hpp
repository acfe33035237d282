// Reads attributes of a block device from /sys/dev/block/MAJ:MIN, e.g.
// "queue/discard_max_bytes" or "discard_alignment". A partition has no queue/
// directory of its own; queue/ attributes then come from its parent disk.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace xbb::storage {

// The attribute's first line, without the newline; nullopt if unreadable.
std::optional<std::string> read_block_attribute(dev_t device, const std::string& name);
// The attribute as an unsigned decimal; nullopt if unreadable or not a number.
std::optional<uint64_t> read_block_number(dev_t device, const std::string& name);

}  // namespace xbb::storage
