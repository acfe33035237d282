// How a target is opened; shared by every storage kind.
#pragma once

namespace xbb::storage {

struct OpenOptions {
  // Open without write access; writes and discards then fail with -EROFS.
  bool read_only = false;
  // Regular files only: bypass the page cache with O_DIRECT. Buffers, offsets
  // and lengths must then be aligned to Properties::logical_block_size.
  // Block devices are always opened O_DIRECT; RAM ignores this.
  bool direct_io = false;
};

}  // namespace xbb::storage
