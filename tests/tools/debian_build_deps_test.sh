#!/bin/bash
# debian/control's Build-Depends are packages tools/setup installs, so a
# machine set up by tools/setup can run dpkg-buildpackage (as tools/test does),
# and a library added to the build is added to both or this fails.
set -u
src=$1
passed=0 failed=0
# BUILD_PACKAGES=( ... ) in tools/setup, comments dropped.
setup=$(sed -n '/^BUILD_PACKAGES=(/,/^)/p' "$src/tools/setup" | sed -e 's/#.*//' -e 's/BUILD_PACKAGES=(//' -e 's/)//' | tr -s ' \t' '\n' | grep -v '^$')
# Build-Depends: field and its continuation lines, versions and commas dropped.
deps=$(awk '/^Build-Depends:/ {on=1; sub(/^Build-Depends:/, "")} on && /^[A-Z#]/ && !/^Build-Depends:/ {on=0} on' "$src/debian/control" |
    tr ',' '\n' | sed -e 's/([^)]*)//g' -e 's/\[[^]]*\]//g' | tr -d ' \t' | grep -v '^$')
[ "$(printf '%s\n' "$deps" | wc -l)" -ge 8 ] || { echo "FAIL found only: $deps (did debian/control change shape?)"; exit 1; }
for d in $deps; do
    # debhelper-compat is a virtual package provided by debhelper.
    want=$d
    [ "$d" = debhelper-compat ] && want=debhelper
    if printf '%s\n' "$setup" | grep -qx -- "$want"; then
        echo "ok   $d is installed by tools/setup"; passed=$((passed + 1))
    else
        echo "FAIL Build-Depends names $d, which tools/setup does not install"; failed=$((failed + 1))
    fi
done
# What tools/package runs besides the build.
for p in dpkg-dev lintian fakeroot; do
    printf '%s\n' "$setup" | grep -qx -- "$p" && { echo "ok   tools/setup installs $p"; passed=$((passed + 1)); } ||
        { echo "FAIL tools/setup lacks $p (tools/package needs it)"; failed=$((failed + 1)); }
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
