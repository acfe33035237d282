#!/bin/bash
# `cmake --install` puts every file where the system looks for it, whatever
# the prefix: binaries and man pages under the prefix given at install time;
# the hotplug script, the config and the modprobe blacklist under /etc (libxl,
# xbbd and modprobe look nowhere else); the unit in /lib/systemd/system; and
# the unit's ExecStart and the script's xbbctl naming the binaries as
# installed. Installs into DESTDIR twice: --prefix /usr (what a package or a
# dom0 uses) and --prefix /opt/xbbd (not the build's configured prefix).
set -u
build=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }

install_into() {  # DESTDIR PREFIX
    if ! DESTDIR=$1 cmake --install "$build" --prefix "$2" > "$1.log" 2>&1; then
        fail "cmake --install --prefix $2: $(cat "$1.log")"
        return 1
    fi
    ok "cmake --install --prefix $2"
}

check_tree() {  # DESTDIR PREFIX
    local root=$1 prefix=$2
    local expected=(
        "$prefix/sbin/xbbd" "$prefix/sbin/xbbctl"
        "$prefix/share/man/man8/xbbd.8" "$prefix/share/man/man8/xbbctl.8" "$prefix/share/man/man8/block-xbbd.8"
        "$prefix/share/man/man5/xbbd.conf.5"
        /etc/xen/scripts/block-xbbd /etc/xbbd/xbbd.conf /etc/modprobe.d/xbbd-blacklist.conf
        /lib/systemd/system/xbbd.service
    )
    # Exactly these files, nothing else (no /usr/local/etc, no stray copies).
    local want got
    want=$(printf '%s\n' "${expected[@]}" | sort)
    got=$(cd "$root" && find . -type f -o -type l | sed 's|^\.||' | sort)
    [ "$want" = "$got" ] && ok "$prefix: exactly the expected files" ||
        fail "$prefix: files differ from the expected ones:$(diff <(echo "$want") <(echo "$got") | sed 's/^/ /')"
    for x in "$prefix/sbin/xbbd" "$prefix/sbin/xbbctl" /etc/xen/scripts/block-xbbd; do
        [ -x "$root$x" ] && ok "$prefix: $x is executable" || fail "$prefix: $x is not executable"
    done
    local unit=$root/lib/systemd/system/xbbd.service
    local exec_start
    exec_start=$(grep '^ExecStart=' "$unit" 2>/dev/null)
    [ "$exec_start" = "ExecStart=$prefix/sbin/xbbd --config /etc/xbbd/xbbd.conf" ] && ok "$prefix: unit ExecStart" ||
        fail "$prefix: unit says '$exec_start'"
    grep -q '@' "$unit" 2>/dev/null && fail "$prefix: unsubstituted @VARIABLE@ left in the unit: $(grep '@' "$unit")" ||
        ok "$prefix: unit fully substituted"
    local ctl
    ctl=$(grep '^XBBCTL=' "$root/etc/xen/scripts/block-xbbd" 2>/dev/null)
    [ "$ctl" = "XBBCTL=\${XBBCTL:-$prefix/sbin/xbbctl}" ] && ok "$prefix: block-xbbd runs the installed xbbctl" ||
        fail "$prefix: block-xbbd says '$ctl'"
    sh -n "$root/etc/xen/scripts/block-xbbd" && ok "$prefix: block-xbbd still parses" ||
        fail "$prefix: block-xbbd no longer parses"
}

if install_into "$work/usr" /usr; then check_tree "$work/usr" /usr; fi
if install_into "$work/opt" /opt/xbbd; then check_tree "$work/opt" /opt/xbbd; fi
# man finds the page by name in the installed tree.
page=$(MANPATH=$work/usr/usr/share/man man -w xbbd 2>&1)
[ "$page" = "$work/usr/usr/share/man/man8/xbbd.8" ] && ok "man -w xbbd finds the installed page" ||
    fail "man -w xbbd says '$page'"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
