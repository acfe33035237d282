#include "xenstore/Vdev.hpp"

#include <cstdint>

#include "xenstore/BackendPath.hpp"

namespace xbb::xs {
namespace {

constexpr uint32_t kXvdMajor = 202;
constexpr uint32_t kSdMajor = 8;
constexpr uint32_t kHdMajorFirst = 3;    // hda, hdb
constexpr uint32_t kHdMajorSecond = 22;  // hdc, hdd
constexpr uint32_t kExtendedFlag = 1u << 28;
constexpr uint32_t kMaxExtendedDisk = (1u << 20) - 1;
constexpr uint32_t kMaxExtendedPartition = 255;

struct DiskPartition {
  uint32_t disk;
  uint32_t partition;
};

// "<prefix><letters>[<partition>]" with bijective base-26 letters
// (a=0, z=25, aa=26, ...), as libxl parses them.
std::optional<DiskPartition> parse_lettered(std::string_view name, std::string_view prefix,
                                            uint32_t max_disk, uint32_t max_partition) {
  if (name.substr(0, prefix.size()) != prefix) return std::nullopt;
  name.remove_prefix(prefix.size());
  size_t letters = 0;
  uint64_t disk_plus_one = 0;
  while (letters < name.size() && name[letters] >= 'a' && name[letters] <= 'z') {
    disk_plus_one = disk_plus_one * 26 + static_cast<uint64_t>(name[letters] - 'a' + 1);
    if (disk_plus_one > static_cast<uint64_t>(max_disk) + 1) return std::nullopt;
    ++letters;
  }
  if (letters == 0) return std::nullopt;
  const std::string_view digits = name.substr(letters);
  uint32_t partition = 0;
  if (!digits.empty()) {
    // "xvda0" is not a name: partition numbers start at 1 and have no leading zero.
    auto p = parse_canonical_uint(digits, max_partition);
    if (!p || *p == 0) return std::nullopt;
    partition = static_cast<uint32_t>(*p);
  }
  return DiskPartition{static_cast<uint32_t>(disk_plus_one - 1), partition};
}

std::optional<DiskPartition> parse_dp(std::string_view name) {
  if (name.empty() || name[0] != 'd') return std::nullopt;
  const size_t p = name.find('p');
  if (p == std::string_view::npos) return std::nullopt;
  auto disk = parse_canonical_uint(name.substr(1, p - 1), kMaxExtendedDisk);
  auto part = parse_canonical_uint(name.substr(p + 1), kMaxExtendedPartition);
  if (!disk || !part) return std::nullopt;
  return DiskPartition{static_cast<uint32_t>(*disk), static_cast<uint32_t>(*part)};
}

uint32_t encode_xvd(DiskPartition dp) {
  if (dp.disk < 16 && dp.partition < 16) return (kXvdMajor << 8) | (dp.disk << 4) | dp.partition;
  return kExtendedFlag | (dp.disk << 8) | dp.partition;
}

std::string disk_letters(uint32_t disk) {
  std::string out;
  uint64_t n = static_cast<uint64_t>(disk) + 1;  // bijective base 26
  while (n > 0) {
    --n;
    out.insert(out.begin(), static_cast<char>('a' + n % 26));
    n /= 26;
  }
  return out;
}

std::string lettered(std::string_view prefix, uint32_t disk, uint32_t partition) {
  std::string out(prefix);
  out += disk_letters(disk);
  if (partition != 0) out += std::to_string(partition);
  return out;
}

}  // namespace

std::optional<uint32_t> parse_vdev(std::string_view name) {
  if (auto dp = parse_lettered(name, "xvd", kMaxExtendedDisk, kMaxExtendedPartition)) {
    return encode_xvd(*dp);
  }
  if (auto dp = parse_dp(name)) return encode_xvd(*dp);
  if (auto number = parse_canonical_uint(name, INT32_MAX)) return static_cast<uint32_t>(*number);
  if (auto dp = parse_lettered(name, "hd", 3, 63)) {
    const uint32_t major = dp->disk < 2 ? kHdMajorFirst : kHdMajorSecond;
    return (major << 8) | ((dp->disk & 1) << 6) | dp->partition;
  }
  if (auto dp = parse_lettered(name, "sd", 15, 15)) {
    return (kSdMajor << 8) | (dp->disk << 4) | dp->partition;
  }
  return std::nullopt;
}

std::string vdev_name(uint32_t id) {
  if ((id >> 28) == 1) {
    const uint32_t disk = (id >> 8) & kMaxExtendedDisk;
    const uint32_t partition = id & 0xff;
    // Small disk/partition pairs have a short encoding; the extended spelling
    // of the same pair is not what the name parses back to.
    if (disk >= 16 || partition >= 16) return lettered("xvd", disk, partition);
  } else if (id <= 0xffff) {
    const uint32_t major = id >> 8;
    const uint32_t minor = id & 0xff;
    if (major == kXvdMajor) return lettered("xvd", minor >> 4, minor & 15);
    if (major == kSdMajor) return lettered("sd", minor >> 4, minor & 15);
    if (major == kHdMajorFirst || major == kHdMajorSecond) {
      if (minor < 128) {
        const uint32_t disk = (major == kHdMajorFirst ? 0 : 2) + (minor >> 6);
        return lettered("hd", disk, minor & 63);
      }
    }
  }
  return std::to_string(id);
}

}  // namespace xbb::xs
