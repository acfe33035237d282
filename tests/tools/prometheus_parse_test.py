#!/usr/bin/python3
"""Checks `xbbctl stats --prometheus` against `xbbctl --json stats`.

    prometheus_parse_test.py STATS.json STATS.prom

Parses the exposition with Prometheus's own text parser (Debian's
python3-prometheus-client) and asserts that every family has HELP and TYPE,
every series carries the device, domid and vdev labels (and queue for queue
series), and that every value the JSON answer holds is there with the same
value: requests per operation, bytes, dispatches, coalescing, shortages,
rejections, halts, in-flight, notifications, the latency histogram (cumulative
`le` buckets, +Inf, _sum, _count), the device's properties and tunables.
Called by the ctest test backend_sim_prometheus_test with a live daemon's output.
"""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families

checks = 0
failures = []


def expect(condition, message):
    global checks
    checks += 1
    if not condition:
        failures.append(message)


def main(json_path, prom_path):
    with open(json_path) as f:
        answer = json.load(f)
    with open(prom_path) as f:
        text = f.read()

    families = {}
    for family in text_string_to_metric_families(text):
        expect(family.name not in families, f"family {family.name} appears twice")
        families[family.name] = family
        expect(family.documentation, f"family {family.name} has no HELP text")
        expect(family.type in ("counter", "gauge", "histogram"), f"family {family.name} has type {family.type}")

    # The parser accepts samples whose family is announced elsewhere; the format
    # wants each family's lines in one group right under its TYPE line.
    announced, current = set(), None
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            current = line.split()[2]
            expect(current not in announced, f"TYPE {current} announced twice")
            announced.add(current)
        elif line and not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            expect(current is not None and name in (current, current + "_bucket", current + "_sum", current + "_count"),
                   f"sample {line!r} outside its family's group (under TYPE {current})")

    def value(family, sample, labels):
        """The value of the one sample named `sample` whose labels are exactly `labels`."""
        fam = families.get(family)
        if fam is None:
            expect(False, f"family {family} missing")
            return None
        found = [s.value for s in fam.samples if s.name == sample and s.labels == labels]
        expect(len(found) == 1, f"{sample}{labels}: {len(found)} samples (want 1)")
        return found[0] if found else None

    def same(family, sample, labels, want):
        got = value(family, sample, labels)
        expect(got is not None and got == want, f"{sample}{labels} = {got}, JSON says {want}")

    def check_stats(prefix, labels, s):
        for op, c in s["operations"].items():
            l = dict(labels, operation=op)
            for what in ("received", "completed", "failed"):
                same(f"{prefix}requests_{what}", f"{prefix}requests_{what}_total", l, c[what])
        same(f"{prefix}read_bytes", f"{prefix}read_bytes_total", labels, s["bytes_read"])
        same(f"{prefix}written_bytes", f"{prefix}written_bytes_total", labels, s["bytes_written"])
        same(f"{prefix}dispatches", f"{prefix}dispatches_total", dict(labels, kind="normal"), s["normal_dispatches"])
        same(f"{prefix}dispatches", f"{prefix}dispatches_total", dict(labels, kind="forced"), s["forced_dispatches"])
        for key in ("coalesced_requests", "resource_shortages", "rejected_requests", "ring_halts",
                    "notifications_sent", "notifications_received", "notifications_held",
                    "responses_held_in_order", "events_deferred", "persistent_grants_purged"):
            same(f"{prefix}{key}", f"{prefix}{key}_total", labels, s[key])
        same(f"{prefix}requests_in_flight", f"{prefix}requests_in_flight", labels, s["in_flight"])

        # The histogram: bucket i of the JSON counts [2^(i-1), 2^i) us; the
        # exposition's bucket le=2^i us counts everything up to it.
        name = f"{prefix}request_latency_seconds"
        fam = families.get(name)
        expect(fam is not None and fam.type == "histogram", f"{name} is not a histogram")
        buckets = s["latency_us_log2"]
        cumulative = 0
        for i, count in enumerate(buckets):
            cumulative += count
            le = "+Inf" if i == len(buckets) - 1 else None
            if le is None:
                # Find the bucket by its bound as a number, whatever its spelling.
                bound = 2 ** i * 1e-6
                matches = [smp for smp in (fam.samples if fam else []) if smp.name == name + "_bucket"
                           and {k: v for k, v in smp.labels.items() if k != "le"} == labels
                           and smp.labels.get("le") != "+Inf" and math.isclose(float(smp.labels["le"]), bound, rel_tol=1e-12)]
                expect(len(matches) == 1, f"{name}_bucket{labels} le={bound}: {len(matches)} samples")
                if matches:
                    expect(matches[0].value == cumulative, f"{name}_bucket{labels} le={bound} = {matches[0].value}, want {cumulative}")
            else:
                same(name, name + "_bucket", dict(labels, le="+Inf"), cumulative)
        expect(cumulative == sum(buckets), "cumulative")
        same(name, name + "_count", labels, sum(buckets))
        got = value(name, name + "_sum", labels)
        want = s["latency_sum_ns"] / 1e9
        expect(got is not None and math.isclose(got, want, rel_tol=1e-12), f"{name}_sum{labels} = {got}, want {want}")
        expect(sum(buckets) == 0 or s["latency_sum_ns"] > 0, f"{labels}: latencies recorded but their sum is 0")

    devices = answer["devices"]
    expect(len(devices) > 0, "the JSON answer has no device: nothing was compared")
    same("xbbd_devices", "xbbd_devices", {}, len(devices))
    same("xbbd_unreachable_devices", "xbbd_unreachable_devices", {}, len(answer.get("unreachable", [])))
    total_requests = 0
    for d in devices:
        labels = {"device": d["device"], "domid": str(d["domid"]), "vdev": d["vdev"]}
        info = dict(labels)
        for key in ("phase", "storage", "target", "protocol", "backend"):
            if key in d:
                info[key] = str(d[key])
        # Label values round-trip exactly, escaping included (the target may hold quotes).
        same("xbbd_device_info", "xbbd_device_info", info, 1)
        same("xbbd_device_size_bytes", "xbbd_device_size_bytes", labels, d["size_bytes"])
        same("xbbd_device_read_only", "xbbd_device_read_only", labels, int(d["read_only"]))
        same("xbbd_device_queues", "xbbd_device_queues", labels, d["queues"])
        same("xbbd_device_ring_page_order", "xbbd_device_ring_page_order", labels, d["ring_page_order"])
        same("xbbd_device_persistent_grants", "xbbd_device_persistent_grants", labels, int(d["persistent_grants"]))
        same("xbbd_device_mapped_grant_pages", "xbbd_device_mapped_grant_pages", labels, d["mapped_grant_pages"])
        for name, v in d["tunables"].items():
            same("xbbd_device_tunable", "xbbd_device_tunable", dict(labels, name=name), float(v))
        check_stats("xbbd_device_", labels, d["stats"])
        total_requests += sum(c["received"] for c in d["stats"]["operations"].values())
        for q, qs in enumerate(d["queue_stats"]):
            check_stats("xbbd_queue_", dict(labels, queue=str(q)), qs)
        # No queue series beyond the JSON's queues.
        queues_seen = {s.labels.get("queue") for s in families["xbbd_queue_read_bytes"].samples
                       if s.labels.get("device") == d["device"]}
        expect(queues_seen == {str(q) for q in range(len(d["queue_stats"]))},
               f"{d['device']}: queue series {sorted(queues_seen)} for {len(d['queue_stats'])} queues")
    expect(total_requests > 0, "no request was counted: the test did no I/O")

    # Every series names its device (but the two process-wide gauges).
    for fam in families.values():
        for smp in fam.samples:
            if fam.name in ("xbbd_devices", "xbbd_unreachable_devices"):
                continue
            expect({"device", "domid", "vdev"} <= smp.labels.keys(), f"{smp.name}{smp.labels} lacks device labels")
            expect(fam.name.startswith("xbbd_queue_") == ("queue" in smp.labels),
                   f"{smp.name}{smp.labels}: queue label on a device series or missing on a queue series")

    for f in failures:
        print("FAIL", f)
    print(f"{len(families)} families, {sum(len(f.samples) for f in families.values())} samples")
    print(f"{checks - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
