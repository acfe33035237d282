// The text form of fault-injection settings used by xbbctl and the config:
//   "off" | "rate=N[,ops=read+write+flush+discard][,seed=S][,latency=MIN[-MAX]]"
// N is failures per 10000 requests (rumpblk's RUMP_BLKFAIL); latency is in
// microseconds (suffix "us" or "ms" accepted).
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "storage/fault/FaultSettings.hpp"

namespace xbb::backend {

// The settings, or a message naming the bad part.
std::variant<storage::FaultSettings, std::string> parse_fault_spec(std::string_view text);
std::string to_string(const storage::FaultSettings& settings);

}  // namespace xbb::backend
