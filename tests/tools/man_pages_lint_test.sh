#!/bin/bash
# Every man page renders without a single warning: groff's own checks
# (-ww), mandoc's linter, and man(1) exactly as lintian runs it on a package.
# All three are Debian packages that tools/setup installs.
set -u
dir=$1
passed=0 failed=0
check() {  # NAME COMMAND...: passes when COMMAND succeeds and prints nothing on stderr
    local name=$1
    shift
    local err
    err=$("$@" 2>&1 >/dev/null)
    local status=$?
    if [ "$status" -ne 0 ] || [ -n "$err" ]; then
        echo "FAIL $name (status $status): $err"
        failed=$((failed + 1))
    else
        echo "ok   $name"
        passed=$((passed + 1))
    fi
}
pages=("$dir"/*.[1-9])
[ -e "${pages[0]}" ] || { echo "FAIL no man pages in $dir"; exit 1; }
for page in "${pages[@]}"; do
    name=$(basename "$page")
    check "$name: groff -man -ww" groff -man -ww -z "$page"
    # mandoc reports on stdout
    check "$name: mandoc -Tlint" sh -c 'mandoc -Tlint -W warning "$1" >&2' mandoc "$page"
    check "$name: man --warnings" env LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 \
        man --warnings -E UTF-8 -l -Tutf8 -Z "$page"
    # The name line must be what man -k and whatis index: "name \- summary".
    if sed -n '/^\.SH NAME/{n;p;q}' "$page" | grep -qE '^[a-z.\\-]+ \\- .+'; then
        echo "ok   $name: NAME line"; passed=$((passed + 1))
    else
        echo "FAIL $name: NAME line is not 'name \\- summary'"; failed=$((failed + 1))
    fi
done
# Four pages: xbbd(8), xbbctl(8), block-xbbd(8), xbbd.conf(5).
[ "${#pages[@]}" -eq 4 ] && { echo "ok   four pages"; passed=$((passed + 1)); } ||
    { echo "FAIL ${#pages[@]} pages, want 4"; failed=$((failed + 1)); }
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
