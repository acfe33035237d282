// Parses administrator-written sizes: decimal digits with an optional binary
// suffix K, M, G or T (case-insensitive, powers of 1024), e.g. "512", "64M",
// "2g". Anything else ("12Q", "-1", "", "1.5G", overflow) is rejected.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace xbb::storage {

std::optional<uint64_t> parse_size(std::string_view text);

}  // namespace xbb::storage
