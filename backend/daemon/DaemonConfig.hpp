// xbbd's settings from the config file and the command line, one parser for
// both so that `--max-queues 4` and `max-queues = 4` mean the same thing.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <spdlog/common.h>

#include "backend/daemon/Daemon.hpp"

namespace xbb::backend {

struct DaemonConfig {
  DaemonOptions options;
  spdlog::level::level_enum log_level = spdlog::level::info;

  // Sets one setting or tunable by name. Returns a message naming the
  // setting and what is wrong, nothing on success.
  std::optional<std::string> set(std::string_view name, std::string_view value);
  // Reads `name = value` lines; '#' starts a comment. The first bad line is
  // reported as "FILE:LINE: message".
  std::optional<std::string> load_file(const std::string& path);
};

}  // namespace xbb::backend
