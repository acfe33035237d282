#include "tools/PrometheusStats.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace xbb::tools {
namespace {

using nlohmann::json;
using Labels = std::vector<std::pair<std::string, std::string>>;

// The text format wants every sample of a family in one group under its HELP
// and TYPE lines, while the answer is walked device by device: samples are
// collected per family and written out at the end, in first-use order.
class Exposition {
 public:
  void family(const std::string& name, const char* type, const char* help) {
    if (index_.count(name)) return;
    index_[name] = families_.size();
    families_.push_back({name, type, help, {}});
  }
  // `suffix` is "" or a histogram's "_bucket", "_sum", "_count".
  void sample(const std::string& name, std::string_view suffix, const Labels& labels, std::string_view value) {
    auto& out = families_.at(index_.at(name)).samples;
    out += name;
    out += suffix;
    if (!labels.empty()) {
      out += '{';
      for (size_t i = 0; i < labels.size(); ++i) {
        if (i) out += ',';
        out += labels[i].first;
        out += "=\"";
        out += escape_label_value(labels[i].second);
        out += '"';
      }
      out += '}';
    }
    out += ' ';
    out += value;
    out += '\n';
  }
  std::string text() const {
    std::string out;
    for (const auto& f : families_) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name, escape_help(f.help), f.name, f.type);
      out += f.samples;
    }
    return out;
  }

 private:
  struct Family {
    std::string name;
    const char* type;
    const char* help;
    std::string samples;
  };
  std::vector<Family> families_;
  std::map<std::string, size_t> index_;
};

std::string number(uint64_t v) { return std::to_string(v); }
// Shortest text that reads back as the same double ("1e-06", "0.0125").
std::string number(double v) { return fmt::format("{}", v); }

Labels with(Labels labels, std::string name, std::string value) {
  labels.emplace_back(std::move(name), std::move(value));
  return labels;
}

std::string text_of(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

// A count: a non-negative integer (parsed JSON holds those as unsigned,
// JSON built in C++ from int literals as signed).
std::optional<uint64_t> count_of(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  return std::nullopt;
}

// A count the daemon sent; nothing when it did not.
std::optional<uint64_t> unsigned_field(const json& object, const char* key) {
  if (!object.is_object()) return std::nullopt;
  auto it = object.find(key);
  if (it == object.end()) return std::nullopt;
  return count_of(*it);
}

class Writer {
 public:
  explicit Writer(Exposition& out) : out_(out) {}

  void counter(const std::string& name, const char* help, const Labels& labels, std::optional<uint64_t> v) {
    if (!v) return;
    out_.family(name, "counter", help);
    out_.sample(name, "", labels, number(*v));
  }
  void gauge(const std::string& name, const char* help, const Labels& labels, std::optional<uint64_t> v) {
    if (!v) return;
    out_.family(name, "gauge", help);
    out_.sample(name, "", labels, number(*v));
  }

  // One StatsSnapshot (Statistics.cpp's to_json) under `prefix`.
  void stats(const std::string& prefix, const Labels& labels, const json& s) {
    if (!s.is_object()) return;
    if (auto ops = s.find("operations"); ops != s.end() && ops->is_object()) {
      for (const auto& [op, c] : ops->items()) {
        const Labels l = with(labels, "operation", op);
        counter(prefix + "requests_received_total", "Requests consumed from the ring, by blkif operation.", l,
                unsigned_field(c, "received"));
        counter(prefix + "requests_completed_total",
                "Requests answered (successfully or not), by blkif operation.", l, unsigned_field(c, "completed"));
        counter(prefix + "requests_failed_total", "Requests answered with an error, by blkif operation.", l,
                unsigned_field(c, "failed"));
      }
    }
    counter(prefix + "read_bytes_total", "Bytes read from the storage for the guest.", labels,
            unsigned_field(s, "bytes_read"));
    counter(prefix + "written_bytes_total", "Bytes written to the storage for the guest.", labels,
            unsigned_field(s, "bytes_written"));
    const char* dispatch_help =
        "Request lists handed to the storage: normal when the next request did not continue the list (another "
        "operation, not contiguous, or max_list_segments reached), forced when the ring ran empty or the worker "
        "had to stop consuming (resource shortage, barrier, stop).";
    counter(prefix + "dispatches_total", dispatch_help, with(labels, "kind", "normal"),
            unsigned_field(s, "normal_dispatches"));
    counter(prefix + "dispatches_total", dispatch_help, with(labels, "kind", "forced"),
            unsigned_field(s, "forced_dispatches"));
    counter(prefix + "coalesced_requests_total", "Requests merged into an already open request list.", labels,
            unsigned_field(s, "coalesced_requests"));
    counter(prefix + "resource_shortages_total",
            "Times the ring was left unconsumed for want of buffers, request slots or storage depth.", labels,
            unsigned_field(s, "resource_shortages"));
    counter(prefix + "rejected_requests_total", "Requests that failed validation (answered with an error).", labels,
            unsigned_field(s, "rejected_requests"));
    counter(prefix + "ring_halts_total", "Rings halted because the frontend's producer index ran a ring ahead.",
            labels, unsigned_field(s, "ring_halts"));
    gauge(prefix + "requests_in_flight", "Requests consumed from the ring and not answered yet.", labels,
          unsigned_field(s, "in_flight"));
    counter(prefix + "notifications_sent_total", "Event-channel notifications sent to the frontend.", labels,
            unsigned_field(s, "notifications_sent"));
    counter(prefix + "notifications_received_total", "Wake-ups by the frontend's event channel.", labels,
            unsigned_field(s, "notifications_received"));
    counter(prefix + "notifications_held_total",
            "Events held back to cover more responses (notification moderation, tunable notify_batch).", labels,
            unsigned_field(s, "notifications_held"));
    counter(prefix + "responses_held_in_order_total",
            "Answers that waited for an earlier request's (tunable ordered_responses).", labels,
            unsigned_field(s, "responses_held_in_order"));
    counter(prefix + "events_deferred_total",
            "Events from the frontend after which its event channel stayed masked a while, for finding no request.",
            labels, unsigned_field(s, "events_deferred"));
    counter(prefix + "persistent_grants_purged_total",
            "Least recently used persistent grants unmapped to make room for others.", labels,
            unsigned_field(s, "persistent_grants_purged"));
    latency(prefix + "request_latency_seconds", labels, s);
  }

  // Statistics.hpp: bucket i counts latencies of [2^(i-1), 2^i) microseconds
  // (bucket 0: under 1 us), the last one everything longer. A Prometheus
  // bucket counts everything up to its bound, so the counts accumulate, and
  // the last bucket is +Inf.
  void latency(const std::string& name, const Labels& labels, const json& s) {
    auto buckets = s.find("latency_us_log2");
    if (buckets == s.end() || !buckets->is_array() || buckets->empty()) return;
    out_.family(name, "histogram",
                "Time from consuming a request from the ring to pushing its response, in seconds.");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < buckets->size(); ++i) {
      cumulative += count_of((*buckets)[i]).value_or(0);
      const bool last = i + 1 == buckets->size();
      const std::string le = last ? "+Inf" : number(std::ldexp(1e-6, static_cast<int>(i)));
      out_.sample(name, "_bucket", with(labels, "le", le), number(cumulative));
    }
    if (auto sum = unsigned_field(s, "latency_sum_ns")) {
      out_.sample(name, "_sum", labels, number(static_cast<double>(*sum) / 1e9));
    }
    out_.sample(name, "_count", labels, number(cumulative));
  }

  void device(const json& d) {
    if (!d.is_object()) return;
    const Labels labels{{"device", d.value("device", std::string())},
                        {"domid", d.contains("domid") ? text_of(d["domid"]) : std::string()},
                        {"vdev", d.value("vdev", std::string())}};
    Labels info = labels;
    for (const char* key : {"phase", "storage", "target", "protocol", "backend"}) {
      if (d.contains(key)) info.emplace_back(key, text_of(d[key]));
    }
    out_.family("xbbd_device_info", "gauge",
                "Always 1: what a device is (xenbus phase, storage, target, ring protocol, backend directory).");
    out_.sample("xbbd_device_info", "", info, "1");
    gauge("xbbd_device_size_bytes", "Size of the disk.", labels, unsigned_field(d, "size_bytes"));
    auto flag = [&](const char* key) -> std::optional<uint64_t> {
      if (!d.contains(key) || !d[key].is_boolean()) return std::nullopt;
      return d[key].get<bool>() ? 1 : 0;
    };
    gauge("xbbd_device_read_only", "1 when the guest may only read the disk.", labels, flag("read_only"));
    gauge("xbbd_device_queues", "Rings (queues) connected.", labels, unsigned_field(d, "queues"));
    gauge("xbbd_device_ring_page_order", "log2 of the pages of each ring.", labels,
          unsigned_field(d, "ring_page_order"));
    gauge("xbbd_device_persistent_grants", "1 when the frontend uses persistent grants.", labels,
          flag("persistent_grants"));
    gauge("xbbd_device_mapped_grant_pages", "Guest pages mapped: rings and persistent grants.", labels,
          unsigned_field(d, "mapped_grant_pages"));
    gauge("xbbd_device_snapshots", "Snapshots taken of the disk and not deleted.", labels,
          unsigned_field(d, "snapshots"));
    if (auto tunables = d.find("tunables"); tunables != d.end() && tunables->is_object()) {
      for (const auto& [tunable, value] : tunables->items()) {
        const std::string text = text_of(value);
        uint64_t v = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
        if (ec != std::errc() || end != text.data() + text.size()) continue;  // not a number: nothing to graph
        gauge("xbbd_device_tunable", "Current value of each tunable (xbbctl set).", with(labels, "name", tunable), v);
      }
    }
    if (d.contains("stats")) stats("xbbd_device_", labels, d["stats"]);
    if (auto queues = d.find("queue_stats"); queues != d.end() && queues->is_array()) {
      for (size_t q = 0; q < queues->size(); ++q) stats("xbbd_queue_", with(labels, "queue", std::to_string(q)), (*queues)[q]);
    }
  }

 private:
  Exposition& out_;
};

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string prometheus_exposition(const nlohmann::json& answer) {
  Exposition out;
  Writer writer(out);
  const json devices = answer.is_object() ? answer.value("devices", json::array()) : json::array();
  writer.gauge("xbbd_devices", "Devices in this answer.", {}, devices.size());
  // Per-disk mode: disks whose process did not answer, and so are missing
  // here. Always present (0 otherwise), so an alert can watch one series.
  const bool has_unreachable = answer.is_object() && answer.contains("unreachable") && answer["unreachable"].is_array();
  writer.gauge("xbbd_unreachable_devices", "Devices whose xbbd process did not answer (per-disk mode).", {},
               has_unreachable ? answer["unreachable"].size() : 0);
  for (const auto& d : devices) writer.device(d);
  return out.text();
}

}  // namespace xbb::tools
