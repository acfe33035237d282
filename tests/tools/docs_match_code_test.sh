#!/bin/bash
# The man pages and the sample config name everything the code has: every
# option of `xbbd --help`, every setting xbbd.conf accepts (DaemonConfig.cpp)
# and every tunable (Tunables.cpp), every command of `xbbctl help`, every
# setting block-xbbd reads; and xbbd(8) documents no option xbbd lacks.
set -u
xbbd=$1 xbbctl=$2 src=$3
man=$src/docs/man
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
# A man page as plain words: roff's \- and font escapes removed.
plain() { sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\(aq/'"'"'/g' "$1"; }
has() {  # NAME FILE-TEXT WORD: WORD appears as a word in the text
    if printf '%s\n' "$2" | grep -qE -- "(^|[^a-z_-])$3([^a-z_-]|$)"; then ok "$1"; else fail "$1"; fi
}
at_least() {  # NAME COUNT MIN: the code's list was found at all
    [ "$2" -ge "$3" ] && ok "$1 ($2)" || fail "$1: found $2, expected at least $3 (did the code's layout change?)"
}

xbbd8=$(plain "$man/xbbd.8") xbbctl8=$(plain "$man/xbbctl.8")
conf5=$(plain "$man/xbbd.conf.5") block8=$(plain "$man/block-xbbd.8")
sample=$(cat "$src/tools/xbbd.conf")

# xbbd --help (the config file is read first: point it at nothing).
help=$("$xbbd" --config /dev/null --help) || fail "xbbd --help failed"
options=$(printf '%s\n' "$help" | grep -oE -- '--[a-z][a-z-]+' | sort -u)
at_least "xbbd --help options" "$(printf '%s\n' "$options" | wc -l)" 15
for o in $options; do has "xbbd.8 documents $o" "$xbbd8" "$o"; done
# ...and xbbd(8)'s OPTIONS name only options that exist.
for o in $(printf '%s\n' "$xbbd8" | sed -n '/^\.SH OPTIONS/,/^\.SH /p' | grep -E '^\.(B|BR|BI)' | grep -oE -- '--[a-z][a-z-]+' | sort -u); do
    printf '%s\n' "$options" | grep -qx -- "$o" && ok "xbbd has $o" || fail "xbbd.8 documents $o, which xbbd --help lacks"
done

# Settings: every name DaemonConfig::set and Tunables::set accept.
settings=$(grep -oE 'name == "[a-z-]+"' "$src/backend/daemon/DaemonConfig.cpp" | cut -d'"' -f2 | sort -u)
tunables=$(grep -oE 'name == "[a-z_]+"' "$src/backend/engine/Tunables.cpp" | cut -d'"' -f2 | sort -u)
at_least "config settings in DaemonConfig.cpp" "$(printf '%s\n' "$settings" | wc -l)" 12
at_least "tunables in Tunables.cpp" "$(printf '%s\n' "$tunables" | wc -l)" 6
for s in $settings $tunables; do has "xbbd.conf.5 documents $s" "$conf5" "$s"; done
for t in $tunables; do
    has "xbbctl.8 documents tunable $t" "$xbbctl8" "$t"
    has "xbbd --help names tunable $t" "$help" "$t"
done
# The sample file: every tunable, and nothing the code does not know.
for t in $tunables; do
    printf '%s\n' "$sample" | grep -qE "^#?$t = " && ok "tools/xbbd.conf sets $t" || fail "tools/xbbd.conf lacks $t"
done
for s in $(printf '%s\n' "$sample" | sed -nE 's/^#?([a-z_-]+) = .*/\1/p'); do
    printf '%s\n' $settings $tunables | grep -qx -- "$s" && ok "xbbd knows $s" || fail "tools/xbbd.conf sets '$s', which xbbd does not know"
done

# xbbctl: every command it lists.
commands=$("$xbbctl" help | sed -n '/^Commands:/,/^$/p' | awk 'NF && $1 != "Commands:" {print $1}')
at_least "xbbctl commands" "$(printf '%s\n' "$commands" | wc -l)" 6
for c in $commands; do
    printf '%s\n' "$xbbctl8" | grep -qE "^\.BR? $c( |$)" && ok "xbbctl.8 documents $c" || fail "xbbctl.8 lacks command $c"
done
has "xbbctl.8 documents --prometheus" "$xbbctl8" "--prometheus"

# block-xbbd: the settings it reads from the environment or /etc/default/xbbd.
vars=$(grep -oE '^XBBD_[A-Z_]+=' "$src/tools/block-xbbd" | tr -d = | sort -u)
at_least "block-xbbd settings" "$(printf '%s\n' "$vars" | wc -l)" 3
for v in $vars; do has "block-xbbd.8 documents $v" "$block8" "$v"; done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
