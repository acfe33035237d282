// Where fio runs for a target, and whether both sides use O_DIRECT.
//
//   ram:SIZE    xbbd serves RAM; fio runs on a tmpfs file of the same size
//               (created for the run, removed after)
//   PATH, file:PATH
//               a regular file: both on the file; O_DIRECT when it opens so
//               (--direct auto), xbbd's file storage included
//   PATH, dev:PATH
//               a block device: xbbd always uses O_DIRECT; fio too
//   other kinds (nbd:, snapshot:...): xbbd only
#pragma once

#include <optional>
#include <string>

#include "tools/BenchJob.hpp"

namespace xbb::bench {

enum class TargetKind { Ram, File, Device, Other };

struct TargetPlan {
  TargetKind kind = TargetKind::Other;
  std::string path;            // the file or device (empty for ram:/other)
  bool xbbd_direct = false;    // what xbbd's opener is told
  std::string why_no_fio;      // for Other
};

// Throws std::invalid_argument for a path that is neither a file nor a device
// (or missing), and for --direct 1 on a file that refuses O_DIRECT.
TargetPlan plan_target(const BenchJob& job);

// True when `path` opens with O_DIRECT.
bool opens_direct(const std::string& path);

// Creates (or resizes) a tmpfs file of `bytes` with every page allocated, so
// fio reads memory rather than holes. Throws std::runtime_error.
void create_fio_file(const std::string& path, uint64_t bytes);

// fio's O_DIRECT choice for `path` under `mode`, with a phrase for the report.
bool fio_direct(const std::string& path, DirectMode mode, std::string& description);

}  // namespace xbb::bench
