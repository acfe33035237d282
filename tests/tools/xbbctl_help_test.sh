#!/bin/bash
# `xbbctl help` lists every command, `xbbctl help COMMAND` explains each one,
# and mistakes (an unknown command, --json with --prometheus) are refused with
# a message and status 2, before any daemon is contacted.
set -u
xbbctl=$1
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
# run NAME WANT_STATUS WANT_TEXT ARGS...: stdout and stderr together
run() {
    local name=$1 want_status=$2 want_text=$3
    shift 3
    out=$("$xbbctl" --socket /nonexistent/xbbd.sock "$@" 2>&1)
    local status=$?
    if [ "$status" -ne "$want_status" ]; then
        fail "$name: status $status (want $want_status): $out"
    elif [ -n "$want_text" ] && ! printf '%s' "$out" | grep -qF -- "$want_text"; then
        fail "$name: output lacks '$want_text': $out"
    else
        ok "$name"
    fi
}

commands="list stats set detach pause resume resize snapshot fault help"
run help-lists 0 "Commands:" help
listing=$out
for c in $commands; do
    # Each command starts a line of the listing, and has a page of its own.
    if printf '%s\n' "$listing" | grep -qE "^  $c( |$)"; then ok "help-lists-$c"; else fail "help-lists-$c: $listing"; fi
    run "help-$c" 0 "Usage: xbbctl [--socket PATH] [--json] $c" help "$c"
done
# Nothing listed that has no page: every listed command is one we know.
listed=$(printf '%s\n' "$listing" | sed -n '/^Commands:/,/^$/p' | awk 'NF && $1 != "Commands:" {print $1}' | tr '\n' ' ')
[ "$listed" = "$commands " ] && ok "help-lists-exactly" || fail "help-lists-exactly: '$listed' (want '$commands ')"

run help-stats-prometheus 0 "--prometheus" help stats
run help-fault-spec 0 "rate=N" help fault
run help-snapshot-create 0 "snapshot create DEVICE STORE [CLUSTER_SIZE]" help snapshot
run help-unknown 2 "no command 'frobnicate' (commands: list, stats, set, detach, pause, resume, resize, snapshot, fault, help)" help frobnicate
run help-two-commands 2 "help takes one command" help list stats
run unknown-command 2 "unknown command 'frobnicate'" frobnicate
run json-and-prometheus 2 "choose one" --json stats --prometheus
run stats-too-many 2 "usage: xbbctl stats [DEVICE] [--prometheus]" stats 1/xvda 2/xvda
# Without a daemon the error names the socket.
run no-daemon 1 "/nonexistent/xbbd.sock" stats --prometheus
# --help and `help` print the same text.
[ "$("$xbbctl" --help)" = "$listing" ] && ok "dash-dash-help" || fail "dash-dash-help differs from 'xbbctl help'"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
