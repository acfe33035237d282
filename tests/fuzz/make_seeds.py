#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz targets (tests/fuzz/corpus).

Each seed is a short program in the target's input language (see the
decoding in each fuzz_*.cpp), chosen to reach the interesting states at once:
a connected disk, a refused frontend, a removal, a snapshot store with copies,
a catalog. Run it after changing a target's input format:
    tests/fuzz/make_seeds.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    path = os.path.join(HERE, "corpus", target, name)
    with open(path, "wb") as f:
        f.write(bytes(data))


# --- fuzz_negotiation: config bytes a, b [, masks], then operations -------
# a: max_queues = 1 + a%4, max_order = (a>>2)%6, 0x40 persistent, 0x80 faults
# b: 1 read-only, 2 cdrom, 4 map mask (u16 follows), 8 bind mask (u16 follows)
OPEN_OK, OPEN_FAIL = [9, 1], [9, 0]
def state(s): return [6, s]             # kStates index == state for 0..9
def rings(queues, order, style=0, ref=1):
    return [8, queues - 1, order, style, ref & 0xff, ref >> 8]
def node(which, index=0, queue=0): return [0, which, index, queue]
REMOVE, REMOVE_DIRS, FE_GONE, DETACH, SHUTDOWN, READD = [10], [11], [12], [14], [15], [17]
PAUSE, RESTART = [20], [23]
def resume(which): return [21, which]      # 0 same target, 1 a new one, 2 one that fails to open
def grow(ram_32k, by_command): return [22, ram_32k - 1, 1 if by_command else 0]
def destroy(remove_nodes): return [13, 1 if remove_nodes else 0]

write("negotiation", "connect_close_reconnect",
      [0x09, 0] + OPEN_OK + rings(2, 2, 0x20) + state(4) + state(5) + state(6) + state(1) +
      rings(1, 1) + state(4) + REMOVE + state(5) + state(6) + REMOVE_DIRS + READD + OPEN_OK + rings(1, 0, 1))
write("negotiation", "bad_keys",
      [0x05, 0] + OPEN_OK + node(2) + [8] + state(3) + state(6) + state(1) +
      node(7) + [3, 0xff, 0xff, 0xff, 0xff] + state(3) + state(6) + state(1) + node(5) + [4] + state(3))
write("negotiation", "storage_fails", [0x00, 0] + state(3) + OPEN_FAIL + state(5) + REMOVE + state(6) + REMOVE_DIRS)
write("negotiation", "map_fails",
      [0x0b, 0x04, 0x02, 0x00] + OPEN_OK + rings(3, 1) + state(6) + state(1) + rings(2, 1) + state(4))
write("negotiation", "bind_fails", [0x01, 0x08, 0x01, 0x00] + OPEN_OK + rings(1, 0) + state(6) + state(1) + rings(1, 0))
write("negotiation", "domain_dies",
      [0x01, 0] + OPEN_OK + rings(1, 0, 1) + destroy(True) + READD + OPEN_OK + rings(1, 0) + destroy(False))
write("negotiation", "detach_and_shutdown",
      [0x41, 0] + OPEN_OK + rings(1, 0, 0x20) + DETACH + state(5) + state(6) + READD + rings(1, 0) + OPEN_OK + SHUTDOWN)
write("negotiation", "storage_late", [0x15, 0x01] + rings(2, 3) + OPEN_OK + state(4) + FE_GONE + READD + OPEN_OK)
write("negotiation", "pause_resume_resize",
      [0x05, 0] + OPEN_OK + rings(2, 1) + state(4) + PAUSE + resume(0) + PAUSE + resume(2) + resume(1) +
      grow(4, True) + grow(8, False) + PAUSE + state(5) + state(6))
write("negotiation", "restart_adopts", [0x09, 0] + OPEN_OK + rings(2, 2) + state(4) + RESTART + OPEN_OK + PAUSE +
      RESTART + OPEN_OK + resume(0) + REMOVE + state(5) + state(6))


# --- fuzz_control: mode byte (1 = structured), framing byte, then bytes -------
def lines(*requests):
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in requests).encode()

D = "1/xvda"
write("control", "list_stats", [0, 0] + list(lines({"command": "list"}, {"command": "stats", "device": D},
                                                   {"command": "stats"})))
write("control", "set_fault", [0, 2] + list(lines(
    {"command": "set", "device": D, "name": "notify_batch", "value": 4},
    {"command": "set", "device": D, "name": "bogus", "value": "1"},
    {"command": "fault", "device": D, "spec": "rate=100,ops=read+write,seed=3,latency=1-5ms"},
    {"command": "fault", "device": D, "spec": "off"})))
write("control", "snapshots", [0, 1] + list(lines(
    {"command": "snapshot-create", "device": D, "store": "/s1", "cluster_size": 4096},
    {"command": "snapshot-list"},
    {"command": "snapshot-create", "device": D, "store": "/s1"},
    {"command": "snapshot-delete", "device": D, "snapshot": "/s1", "delete_store": True})))
write("control", "detach", [0, 0] + list(lines({"command": "detach", "device": "1/51712"}, {"command": "list"})))
write("control", "garbage", [0, 0x83] + list(b'{"command":\n\n[]\n"list"\n{"command":7}\n{"command":"x"}\n\xff\xfe\n{"comm'))
write("control", "half_close", [0, 0x80] + list(lines({"command": "list"}, {"command": "nope"})))
write("control", "pause_resume_resize", [0, 0] + list(lines(
    {"command": "pause", "device": D}, {"command": "pause", "device": D}, {"command": "resume", "device": D},
    {"command": "pause", "device": D}, {"command": "resume", "device": D, "target": "ram:2M"},
    {"command": "resize", "device": D}, {"command": "resume", "device": D, "target": 5})))
write("control", "structured", [1, 3] + list(range(7, 7 + 96)))


# --- fuzz_snapshot: selector (%4 == 0: catalog), then the store or catalog --
def text(s, limit):
    s = s[:limit]
    return [len(s)] + list(s)

def store_seed(cluster_shift, origin_sectors_u16, copies, entries, flags=0x01):
    out = [1, flags]
    out += [0, cluster_shift, 0] + list(struct.pack("<H", origin_sectors_u16))  # knobs, cluster, origin: u16*512
    out += list(struct.pack("<Q", 1700000000)) + list(struct.pack("<I", 12345))
    out += list(range(16))                                                    # uuid
    out += text(b"ram:1M", 40) + text(b"", 20)
    out += [copies, len(entries)]
    for cluster, slot in entries:
        out += list(struct.pack("<H", cluster)) + [1, slot]
    return out

write("snapshot", "store_with_copies", store_seed(12, 64, 3, [(0, 0), (3, 1), (7, 2)]))
write("snapshot", "store_empty_map", store_seed(16, 2048, 0, []))
write("snapshot", "store_shared_copy", store_seed(12, 64, 2, [(1, 0), (2, 0)]))
write("snapshot", "store_truncated", store_seed(12, 64, 2, [(1, 1)], flags=0x05) + [0x10, 0, 0, 0])
write("snapshot", "store_bad_checksum", store_seed(12, 64, 1, [(1, 0)], flags=0x03))
write("snapshot", "raw_header", [1, 0x08] + text(b"\x00" * 8 + b"\x00\x10\x00\x00\x01\x00\x00\x00", 255))

def catalog_seed(flags, origin, store, body):
    return [0, flags] + text(origin, 24) + text(store, 24) + list(body)

write("snapshot", "catalog", catalog_seed(0, b"file:/a.img", b"/s/b", json.dumps(
    {"origins": {"file:/a.img": ["/s/a"], "ram:1M": ["/s/c", "/s/d"]}}).encode()))
write("snapshot", "catalog_remove", catalog_seed(1, b"ram:1M", b"/s/c", json.dumps(
    {"origins": {"ram:1M": ["/s/c", "/s/d"]}}).encode()))
write("snapshot", "catalog_malformed", catalog_seed(0, b"x", b"y", b'{"origins": {"a": [1, 2]}}'))
write("snapshot", "catalog_not_utf8", catalog_seed(0, b"file:/\xe9t\xe9.img", b"/s/\xff", b'{"origins": {}}'))
