// `xbbctl stats --prometheus`: the daemon's statistics in the Prometheus text
// exposition format (version 0.0.4), the format node_exporter's textfile
// collector reads and every scraper understands.
//
// It renders the JSON answer of the control socket's "stats" command, so it
// works the same against daemon mode and a per-disk supervisor (which merges
// its disks' answers). Every series carries the labels device ("3/51712"),
// domid and vdev; per-queue series add queue. Device series (xbbd_device_*)
// count from the start of the process, across reconnections of the frontend;
// queue series (xbbd_queue_*) belong to the current connection and start
// again from zero when the frontend reconnects, which Prometheus treats as a
// counter reset. Sum one or the other, never both.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace xbb::tools {

// The exposition of one "stats" answer ({"ok": true, "devices": [...]}).
// Fields a daemon did not send are left out rather than reported as zero.
std::string prometheus_exposition(const nlohmann::json& answer);

// Escaping of the text format: label values escape backslash, double quote
// and newline; HELP text escapes backslash and newline.
std::string escape_label_value(std::string_view value);
std::string escape_help(std::string_view text);

}  // namespace xbb::tools
