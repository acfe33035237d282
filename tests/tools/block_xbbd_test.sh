#!/bin/bash
# Tests tools/block-xbbd (the libxl hotplug script) with a file-backed fake
# xenstore and a fake xbbctl: every target check, waiting for xbbd's verdict,
# and the hotplug-error node libxl prints on failure; and `remove` with xbbd
# in per-disk mode (a process per disk, with its own socket).
set -u
script=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/store"
cat > "$work/bin/xenstore-read" <<'F'
#!/bin/sh
[ -f "$STORE/$1" ] || exit 1
cat "$STORE/$1"
F
cat > "$work/bin/xenstore-write" <<'F'
#!/bin/sh
while [ $# -ge 2 ]; do mkdir -p "$STORE/$(dirname "$1")"; printf '%s' "$2" > "$STORE/$1"; shift 2; done
F
# The fake xbbctl: the main socket answers while XBBD_UP is set (its --json
# list is $work/listing); a per-disk socket answers while SOCKET.alive
# exists, and `detach` ends it.
cat > "$work/bin/xbbctl" <<'F'
#!/bin/sh
socket= json=
while [ $# -gt 0 ]; do
    case "$1" in
        --socket) socket=$2; shift 2 ;;
        --json) json=1; shift ;;
        *) break ;;
    esac
done
case "$socket" in
    */xbbd.sock)
        [ -n "${XBBD_UP:-}" ] || exit 1
        [ -n "$json" ] && cat "$WORK/listing" 2>/dev/null
        exit 0
        ;;
esac
[ -e "$socket.alive" ] || exit 1
if [ "$1" = detach ]; then echo "$2" >> "$WORK/detached"; rm -f "$socket.alive"; fi
exit 0
F
chmod +x "$work/bin/"*
mkdir -p "$work/run"
export STORE="$work/store" WORK="$work" PATH="$work/bin:$PATH" XENBUS_PATH=backend/vbd/3/51712 XBBD_WAIT=1 \
    XBBD_SOCKET="$work/run/xbbd.sock" XBBD_REMOVE_WAIT=1
be="$STORE/$XENBUS_PATH"

passed=0 failed=0
check() {  # NAME EXPECTED_STATUS EXPECTED_MESSAGE_SUBSTRING
    name=$1 want_status=$2 want_text=$3
    out=$("$script" add 2>&1)
    status=$?
    if [ "$status" -ne "$want_status" ] || { [ -n "$want_text" ] && ! printf '%s' "$out" | grep -qF -- "$want_text"; }; then
        echo "FAIL $name: status $status (want $want_status), output: $out (want '$want_text')"
        failed=$((failed + 1))
    else
        echo "ok   $name"
        passed=$((passed + 1))
    fi
}
setup() {  # TARGET MODE [HOTPLUG-STATUS]
    rm -rf "$STORE"; mkdir -p "$be"
    printf '%s' "$1" > "$be/params"; printf '%s' "$2" > "$be/mode"
    [ -n "${3:-}" ] && printf '%s' "$3" > "$be/hotplug-status"
    return 0
}

image="$work/disk.img"; truncate -s 1M "$image"
ro_image="$work/ro.img"; truncate -s 1M "$ro_image"; chmod 0444 "$ro_image"

setup "$work/missing.img" w;            check missing-file 1 "does not exist"
[ "$(cat "$be/hotplug-status" 2>/dev/null)" = error ] || { echo "FAIL missing-file: hotplug-status not error"; failed=$((failed + 1)); }
grep -q "does not exist" "$be/hotplug-error" 2>/dev/null || { echo "FAIL missing-file: no hotplug-error"; failed=$((failed + 1)); }
setup "" w;                             check empty-target 1 "no target"
setup "qcow:$image" w;                  check unknown-kind 1 "unknown target kind 'qcow'"
setup "relative.img" w;                 check relative-path 1 "not an absolute path"
setup "$work" w;                        check directory 1 "neither a regular file nor a block device"
setup "ram:lots" w;                     check bad-ram-size 1 "is not a size"
setup "ram:64M:$work/none.img" w;       check missing-ram-image 1 "does not exist"
setup "nbd:http://x" w;                 check bad-nbd-uri 1 "is not an NBD URI"
if [ "$(id -u)" -ne 0 ]; then
    setup "$ro_image" w;                check read-only-file 1 "read-only but the disk is writable"
else
    echo "skip read-only-file: root can write a 0444 file, so the check cannot trigger"
fi
setup "$image" w;                       check xbbd-not-running 1 "xbbd is not running"
export XBBD_UP=1
setup "$image" w connected;             check connected 0 ""
setup "ram:64M" w connected;            check ram-connected 0 ""
setup "$ro_image" r connected;          check read-only-disk 0 ""
setup "$image" w error; printf 'cannot open: Permission denied' > "$be/hotplug-error"
                                        check xbbd-error 1 "cannot open: Permission denied"
setup "$image" w;                       check xbbd-silent 1 "did not open"
# Per-disk mode: the supervisor answers, but started no process for the disk,
# or started one that did not open the target.
printf '{\n  "devices": [],\n  "ok": true,\n  "per_disk": true\n}\n' > "$work/listing"
setup "$image" w;                       check per-disk-no-process 1 "started no process for 3/51712"
printf '{\n  "devices": [\n    {\n      "device": "3/51712"\n    }\n  ],\n  "per_disk": true\n}\n' > "$work/listing"
setup "$image" w;                       check per-disk-silent 1 "xbbd's process for 3/51712 did not open"
rm -f "$work/listing"

check_remove() {  # NAME EXPECTED_MESSAGE_SUBSTRING
    out=$("$script" remove 2>&1)
    status=$?
    if [ "$status" -ne 0 ] || { [ -n "$2" ] && ! printf '%s' "$out" | grep -qF -- "$2"; }; then
        echo "FAIL $1: status $status, output: $out (want '$2')"
        failed=$((failed + 1))
    else
        echo "ok   $1"
        passed=$((passed + 1))
    fi
}
disk_socket="$work/run/3-51712.sock"
# Daemon mode: no per-disk socket, nothing to do.
check_remove remove ""
# Per-disk mode, the process exited but its socket file stayed (it was killed): removed.
touch "$disk_socket"
check_remove remove-stale-socket ""
[ ! -e "$disk_socket" ] || { echo "FAIL remove-stale-socket: $disk_socket left"; failed=$((failed + 1)); }
# Per-disk mode, the process still serves the removed device: detached.
touch "$disk_socket" "$disk_socket.alive"
check_remove remove-lingering-process "still serves it"
grep -qx "3/51712" "$work/detached" 2>/dev/null || { echo "FAIL remove-lingering-process: not detached"; failed=$((failed + 1)); }

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
