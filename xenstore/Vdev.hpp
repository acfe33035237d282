// Virtual block device names and numbers, as in Xen's docs/misc/vbd-interface:
// the toolstack turns `vdev=xvda` into the device id 51712 that names the
// xenstore directories; we need both directions for logs, xbbctl and the
// `--vdev` command-line option.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace xbb::xs {

// Accepts
//   - a plain decimal id ("51712"; canonical, <= INT32_MAX as libxl limits it),
//   - xvdX[N]: disk a..z, aa.. up to 2^20-1 disks, partition 1..255 (no
//     leading zero). disk < 16 and partition < 16 use (202<<8)|(disk<<4)|part,
//     anything larger the extended form (1<<28)|(disk<<8)|part,
//   - dDpP: disk < 2^20 and partition < 256 in the same xvd encoding,
//   - hdX[N]: hda..hdd, partition < 64: majors 3 (hda, hdb) and 22 (hdc, hdd),
//   - sdX[N]: sda..sdp, partition < 16: major 8.
// Everything else (uppercase, signs, spaces, "xvd", "xvda0", overflows) is
// rejected.
std::optional<uint32_t> parse_vdev(std::string_view name);

// The conventional name of a device id ("xvda", "xvdb3", "hdc", "sda1",
// "xvdaa"); ids that are not a canonical encoding of any name are rendered
// as their decimal number. parse_vdev(vdev_name(id)) == id for every id up
// to INT32_MAX (larger ids are never produced by libxl).
std::string vdev_name(uint32_t id);

}  // namespace xbb::xs
