// Per-device knobs an administrator may change while the device runs
// (`xbbctl set`), named after FreeBSD blkback's sysctls where they match.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace xbb::backend {

struct Tunables {
  // Dispatch every request on its own instead of merging contiguous ones.
  bool no_coalesce_reqs = false;
  // Answer flush and barrier requests without flushing the storage (unsafe:
  // for benchmarking or storage that has no volatile cache).
  bool disable_flush = false;
  // Flush the storage only on every Nth flush request (0 or 1: every one).
  uint32_t flush_interval = 0;
  // Largest request list, in 4 KiB segments, built by coalescing.
  uint32_t max_list_segments = 256;
  // Notification moderation (see NotifyModeration.hpp), off by default:
  // hold the frontend's event until notify_batch responses wait for it or
  // notify_delay_us has passed, while the frontend keeps submitting.
  // notify_batch 0 or 1: every event at once, as blkback does.
  uint32_t notify_batch = 0;
  uint32_t notify_delay_us = 2000;
  // Answer requests in the order the frontend queued them: a response is
  // written into the ring only once every earlier request is answered. What
  // makes a ring adoptable after xbbd is killed (SIGKILL, a crash): every
  // request at or after the published rsp_prod is then intact and is served
  // again, and none is answered twice. Costs head-of-line blocking (a slow
  // request holds back the answers of later ones). 0: completion order, as
  // Linux blkback does.
  bool ordered_responses = true;

  bool operator==(const Tunables&) const = default;

  // Sets one tunable from text ("no_coalesce_reqs", "1"). Returns an error
  // message for an unknown name or a bad value, nothing on success.
  std::optional<std::string> set(std::string_view name, std::string_view value);
  // name=value pairs, in a stable order.
  std::vector<std::pair<std::string, std::string>> list() const;
};

}  // namespace xbb::backend
