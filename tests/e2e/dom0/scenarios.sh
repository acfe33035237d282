# shellcheck shell=bash
# The lab's scenarios, run in dom0 by /init. Sourced; uses BACKENDS, SCENARIOS, MODE and
# BENCH_RUNTIME from /lab/config. Each scenario prints exactly one
#   XBBLAB RESULT <backend> <scenario> PASS|FAIL <details>
# line per backend; guests report with "XBBG " lines in their console logs.

CON=/lab/out/console
IMG=/var/lib/xen/images
CFG=/lab/cfg
mkdir -p "$CFG" "$IMG"
# Images get their own tmpfs: the initramfs root is capped at half of dom0's memory and
# already holds dom0's userland and the guest images, so a 256 MiB bench image filled it.
mountpoint -q "$IMG" || mount -t tmpfs -o size=640m,mode=0755 tmpfs "$IMG"

result() { # backend scenario PASS|FAIL details...
  b=$1 s=$2 st=$3
  shift 3
  lab RESULT "$b" "$s" "$st" "$*"
  echo "$b $s $st $*" >>/lab/out/results.txt
}
log() { lab LOG "$*"; }
now() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }

# The xl disk line for one backend. blkback uses the lab's light hotplug script unless the
# host asked for the stock one (see block-lab).
BLKBACK_SCRIPT="script=block-lab,"
[ "${STOCK_BLOCK:-0}" = 1 ] && BLKBACK_SCRIPT=""
disk_line() { # backend target vdev
  case $1 in
  blkback) echo "vdev=$3, access=rw, backendtype=phy, $BLKBACK_SCRIPT target=$2" ;;
  qdisk) echo "vdev=$3, access=rw, backendtype=qdisk, format=raw, target=$2" ;;
  xbbd | xbbd-moderated | xbbd-copy) echo "vdev=$3, access=rw, backendtype=phy, script=block-xbbd, target=$2" ;;
  esac
}

XBBD_PID=
# Starts xbbd (binary $1, then extra arguments) as the lab's daemon, logging to xbbd.log.
xbbd_start() {
  local bin=$1
  shift
  # shellcheck disable=SC2086
  "$bin" $XBBD_ARGS "$@" >>/lab/out/dom0/xbbd.log 2>&1 &
  XBBD_PID=$!
}
backend_enter() {
  case $1 in
  blkback)
    modprobe xen-blkback || return 1
    ;;
  qdisk)
    # Not strictly needed (qdisk lives under backend/qdisk) but keeps each backend alone.
    rmmod xen-blkback 2>/dev/null
    [ -x /usr/libexec/xen-qemu-system-i386 ] || return 1
    ;;
  xbbd | xbbd-moderated | xbbd-copy)
    # xbbd refuses to share backend/vbd with the kernel's blkback.
    rmmod xen-blkback 2>/dev/null
    [ -d /sys/module/xen_blkback ] && return 1
    [ -x /usr/local/sbin/xbbd ] || return 1
    local variant=''
    [ "$1" = xbbd-copy ] && variant=--no-persistent-grants
    xbbd_start xbbd $variant
    sleep 1
    kill -0 "$XBBD_PID" 2>/dev/null || return 1
    ;;
  esac
  return 0
}
backend_leave() {
  if [ -n "$XBBD_PID" ]; then
    kill "$XBBD_PID" 2>/dev/null
    wait "$XBBD_PID" 2>/dev/null
    XBBD_PID=
  fi
  rmmod xen-blkback 2>/dev/null
  return 0
}

# xl -v create; with XL_STAMP set every output line starts with the time it was read
# ($EPOCHREALTIME: no fork per line, so the stamps do not slow xl down).
xl_create() { # cfg
  local l
  [ -z "${XL_STAMP:-}" ] && { xl -v create "$1"; return; }
  xl -v create "$1" 2>&1 | while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done
  return "${PIPESTATUS[0]}"
}

# Writes a config and starts a guest. $1 name, $2 small|fio, $3 job, $4 disk line, $5 extra args
guest_create() {
  local name=$1 kind=$2 job=$3 disk=$4 mem=${GUEST_MEM:-256} t0
  [ "$kind" = fio ] && mem=512 # the fio initramfs does not unpack in 256 MiB
  cat >"$CFG/$name.cfg" <<EOF
name = "$name"
kernel = "/lab/boot/vmlinux"
ramdisk = "/lab/boot/guest-$kind.cpio"
extra = "console=hvc0 loglevel=7 xbblab.job=$job $5"
memory = $mem
vcpus = 1
disk = [ '$disk' ]
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "destroy"
${GUEST_CFG_EXTRA:-}
EOF
  rm -f "$CON/guest-$name.log"
  t0=$(now)
  if ! xl_create "$CFG/$name.cfg" >>/lab/out/dom0/xl-create-$name.log 2>&1; then
    log "xl create $name failed after $(elapsed "$t0") s (see dom0/xl-create-$name.log)"
    return 1
  fi
  log "xl create $name took $(elapsed "$t0") s"
  return 0
}

# Waits until the guest's console log has a line matching $2 (max $3 s); prints that line.
wait_console() {
  local n=0 l
  while [ $n -lt $(($3 * 2)) ]; do
    l=$(grep -a -m1 "$2" "$CON/guest-$1.log" 2>/dev/null)
    if [ -n "$l" ]; then
      echo "$l" | tr -d '\r'
      return 0
    fi
    if grep -a -q 'XBBG ERROR\|Kernel panic' "$CON/guest-$1.log" 2>/dev/null; then
      return 1
    fi
    sleep 0.5
    n=$((n + 1))
  done
  return 1
}

# Value of key=VALUE in a guest line.
field() { echo "$1" | sed -n "s/.*$2=\([^ ]*\).*/\1/p"; }

domain_exists() { xl domid "$1" >/dev/null 2>&1; }

# The log of the xl process that stays in the background for a domain (it acts on the
# guest's reboot, poweroff and crash), and what it said after line $2: how the domain shut
# down and the hotplug scripts' errors when it could not be created again.
xl_bg_log() { echo "/var/log/xen/xl-$1.log"; }
xl_bg_lines() { cat "$(xl_bg_log "$1")" 2>/dev/null | wc -l; }
xl_bg_news() { # name from-line
  tail -n +$(($2 + 1)) "$(xl_bg_log "$1")" 2>/dev/null |
    grep -a 'has shut down\|script:\|unable to\|cannot\|Failed' | sed 's/^libxl: error: [^ ]* //' |
    tr '\n' ' ' | head -c 600
}

# xl shutdown and wait for the domain to vanish; sets SHUT_SECS. Fails if it is still there
# after $2 s (then destroys it).
shutdown_guest() {
  local t0 n
  t0=$(now)
  xl shutdown "$1" >>/lab/out/dom0/xl-$1.log 2>&1
  n=0
  while domain_exists "$1"; do
    n=$((n + 1))
    if [ $n -gt $(($2 * 5)) ]; then
      xl destroy "$1" 2>/dev/null
      SHUT_SECS=$(elapsed "$t0")
      return 1
    fi
    sleep 0.2
  done
  SHUT_SECS=$(elapsed "$t0")
  return 0
}

# Linux's xenbus prints this (pr_info: needs loglevel=7 on the guest's command line) when the
# backend did not answer Closing within 5 s.
closing_stalled() { grep -a -q 'timeout closing device' "$CON/guest-$1.log" 2>/dev/null; }

# Shows the end of a guest's console on the serial line, for failures.
dump_guest() {
  lab LOG "---- last lines of guest $1 console ----"
  tail -n 25 "$CON/guest-$1.log" 2>/dev/null | sed 's/^/XBBLAB LOG | /'
}

destroy_all_guests() {
  for d in $(xl list 2>/dev/null | awk 'NR > 2 {print $1}'); do xl destroy "$d" 2>/dev/null; done
}

collect_logs() {
  mkdir -p /lab/out/dom0/xen
  cp -r /var/log/xen/. /lab/out/dom0/xen/ 2>/dev/null
}

# Shutdown times of this backend's guests ("name:secs" or "name:secs closing-stall" or
# "name:timeout"), reported by the shutdown scenario.
SHUT_RECORD=
record_shutdown() { # name; after shutdown_guest
  if [ "$2" = ok ]; then
    SHUT_RECORD="$SHUT_RECORD $1:$SHUT_SECS"
    closing_stalled "$1" && SHUT_RECORD="$SHUT_RECORD(closing-stall)"
  else
    SHUT_RECORD="$SHUT_RECORD $1:timeout"
  fi
}

selected() { case " $SCENARIOS " in *" $1 "*) return 0 ;; esac; return 1; }
# Which backend runs which scenario; tests/e2e/lab has the same table (its `applies`).
# RAM targets and block-xbbd's target check exist only in xbbd; qdisk's discard goes through
# QEMU's own file driver and is not what the lab is here to check.
applies() { # backend scenario
  case $2 in
  roundtrip-ram | missing-target | restart-kill | restart-term | upgrade | exclusive | shared-ro | \
    second-daemon | resize-grow | resize-ctl | resize-shrink | pause-resume) [ "$1" = xbbd ] ;;
  discard) [ "$1" != qdisk ] ;;
  per-disk | restart-kill-supervisor) [ "$1" = xbbd ] && per_disk_mode ;;
  *) return 0 ;;
  esac
}
per_disk_mode() { case " $XBBD_ARGS " in *" --per-disk "*) return 0 ;; esac; return 1; }
wanted() { selected "$2" && applies "$1" "$2"; } # backend scenario
# "PASS details" or "FAIL reason" from a check function -> one RESULT line.
result_of() { # backend scenario "PASS|FAIL text"
  result "$1" "$2" "${3%% *}" "${3#* }"
}

# md5 of all but the last sector (the guest keeps its boot counter there).
body_md5() { head -c $(($(stat -c %s "$1") - 512)) "$1" | md5sum | cut -d' ' -f1; }

# Compares the READ/WROTE md5 pair a guest reported for $2 against the image $3 and dom0's
# md5 before the boot ($4). Prints the failure reason, or nothing.
check_roundtrip() { # guest dev image want
  l=$(wait_console "$1" "XBBG READ dev=$2 " 150) || { echo "guest never reported reading $2"; return; }
  got=$(field "$l" md5)
  [ "$got" = "$4" ] || { echo "$2: guest read md5 $got, dom0 wrote $4"; return; }
  l=$(wait_console "$1" "XBBG WROTE dev=$2 " 90) || { echo "guest never reported writing $2"; return; }
  wrote=$(field "$l" md5)
  # The guest wrote with fsync and reported after a cache drop: the data must be in the
  # image now, while the backend still has it open.
  sync
  have=$(body_md5 "$3")
  [ "$have" = "$wrote" ] || echo "$2: guest wrote md5 $wrote, dom0 reads $have"
}

# Discard on xvdd (a file dom0 filled with data): the guest discarded 4 MiB at 1 MiB and
# flushed; the range must read back as zeros in the image, the image must hold fewer
# allocated blocks, the bytes around the range must be untouched. Prints PASS/FAIL + text.
check_discard() { # guest image blocks-before md5-outside-before
  local l nz after outside
  l=$(wait_console "$1" 'XBBG DISCARD ' 150) || { echo "FAIL guest never reported the discard"; return; }
  [ "$(field "$l" rc)" = 0 ] ||
    { echo "FAIL blkdiscard failed in the guest (rc $(field "$l" rc), discard_max_bytes $(field "$l" max))"; return; }
  if [ "$(field "$l" sync)" != 0 ] || [ "$(field "$l" flush)" != 0 ]; then
    echo "FAIL sync/flush failed in the guest (sync rc $(field "$l" sync), flush rc $(field "$l" flush))"
    return
  fi
  [ "$(field "$l" ioerr)" = 0 ] ||
    { echo "FAIL the guest's dmesg gained $(field "$l" ioerr) I/O error lines"; return; }
  sync
  nz=$(dd if="$2" bs=1M skip=1 count=4 2>/dev/null | tr -d '\000' | wc -c)
  [ "$nz" = 0 ] || { echo "FAIL $nz non-zero bytes left in the discarded range of the image"; return; }
  after=$(stat -c %b "$2")
  [ "$after" -lt "$3" ] || { echo "FAIL the image still has $after allocated blocks (had $3)"; return; }
  outside=$(outside_md5 "$2")
  [ "$outside" = "$4" ] || { echo "FAIL the bytes outside the discarded range changed"; return; }
  echo "PASS guest blkdiscard 4 MiB + sync + flush rc 0, no I/O error in its dmesg; dom0: range reads zeros, image blocks $3 -> $after (512 B units), rest unchanged"
}
outside_md5() { { head -c 1048576 "$1"; tail -c +$((5 * 1048576 + 1)) "$1"; } | md5sum | cut -d' ' -f1; }

# RAM target xvde preloaded from an image (ram::IMAGE): dom0 -> guest is the guest's O_DIRECT
# md5; guest -> dom0: the guest wrote 1 MiB of a fixed pattern at 1 MiB and re-read the disk
# with O_DIRECT; dom0 predicts that md5 from its image, reads xbbd's byte counters and checks
# that the image file itself never saw the write.
check_ram() { # guest image md5-of-image
  local l got want domid written
  l=$(wait_console "$1" 'XBBG RAM-READ ' 150) || { echo "FAIL guest never reported reading the RAM disk"; return; }
  [ "$(field "$l" size)" = "$(stat -c %s "$2")" ] ||
    { echo "FAIL RAM disk is $(field "$l" size) bytes in the guest, the image $(stat -c %s "$2")"; return; }
  [ "$(field "$l" md5)" = "$3" ] || { echo "FAIL guest read md5 $(field "$l" md5), dom0's image has $3"; return; }
  l=$(wait_console "$1" 'XBBG RAM-WROTE ' 90) || { echo "FAIL guest never reported writing the RAM disk"; return; }
  [ "$(field "$l" rc)" = 0 ] || { echo "FAIL the guest's O_DIRECT write failed (dd rc $(field "$l" rc))"; return; }
  got=$(field "$l" md5)
  want=$({ head -c 1048576 "$2"; yes XBBLAB-RAM-PATTERN | head -c 1048576; tail -c +$((2 * 1048576 + 1)) "$2"; } |
    md5sum | cut -d' ' -f1)
  [ "$got" = "$want" ] || { echo "FAIL guest re-read md5 $got after its write, dom0 predicts $want"; return; }
  domid=$(xl domid "$1")
  # Every object level has a bytes_written (per queue and the device total): the largest is the total.
  written=$(xbbctl --json stats "$domid/xvde" 2>&1 | grep -o '"bytes_written": *[0-9]*' | grep -o '[0-9]*$' | sort -n | tail -n 1)
  [ "${written:-0}" -ge 1048576 ] ||
    { echo "FAIL xbbctl stats $domid/xvde shows ${written:-no} bytes written (guest wrote 1 MiB)"; return; }
  [ "$(md5sum <"$2" | cut -d' ' -f1)" = "$3" ] || { echo "FAIL the guest's write reached the image file"; return; }
  echo "PASS dom0 image -> guest O_DIRECT md5 match; guest 1 MiB O_DIRECT write -> guest re-read md5 = dom0's prediction; dom0: xbbctl stats bytes_written=$written, image file unchanged"
}

# The small guest's whole life on one backend: round trip on a file target (xvda) and a loop
# device target (xvdb), discard on xvdd, a RAM target on xvde (xbbd), block-attach/detach of
# xvdc, xl reboot, xl shutdown. One guest for all of it keeps the lab fast: under TCG every
# boot costs tens of seconds.
sc_lifecycle() {
  b=$1 name=life-$1 a=$IMG/life-a.img bimg=$IMG/life-b.img c=$IMG/life-c.img
  for f in "$a" "$bimg"; do
    rm -f "$f"
    # Small: under TCG every md5 of it (four per disk) costs seconds.
    dd if=/dev/urandom of="$f" bs=1M count=8 2>/dev/null
  done
  want_a=$(body_md5 "$a") want_b=$(body_md5 "$bimg")
  lo=$(losetup -f --show "$bimg") || lo=""
  hp=0
  selected attach-detach && hp=1
  disks="$(disk_line "$b" "$a" xvda)', '$(disk_line "$b" "$lo" xvdb)"
  ndisks=2 args="xbblab.hotplug=$hp"
  # Discard image in dom0's /dev/shm (tmpfs: punching holes frees its blocks).
  dimg=/dev/shm/life-d.img
  if wanted "$b" discard; then
    rm -f "$dimg"
    dd if=/dev/urandom of="$dimg" bs=1M count=8 2>/dev/null
    sync
    d_blocks=$(stat -c %b "$dimg") d_outside=$(outside_md5 "$dimg")
    disks="$disks', '$(disk_line "$b" "$dimg" xvdd)"
    ndisks=$((ndisks + 1)) args="$args xbblab.discard=1"
  fi
  rimg=$IMG/life-ram.img
  if wanted "$b" roundtrip-ram; then
    rm -f "$rimg"
    dd if=/dev/urandom of="$rimg" bs=1M count=4 2>/dev/null
    r_md5=$(md5sum <"$rimg" | cut -d' ' -f1)
    disks="$disks', '$(disk_line "$b" "ram::$rimg" xvde)"
    ndisks=$((ndisks + 1)) args="$args xbblab.ram=1"
  fi
  if [ -z "$lo" ] || ! guest_create "$name" small lifecycle "$disks" "$args"; then
    for s in roundtrip-file roundtrip-loop discard roundtrip-ram per-disk attach-detach reboot; do
      wanted "$b" $s && result "$b" $s FAIL "xl create failed (or losetup)"
    done
    [ -n "$lo" ] && losetup -d "$lo"
    rm -f "$dimg" "$rimg"
    return
  fi

  why=$(check_roundtrip "$name" xvda "$a" "$want_a")
  selected roundtrip-file && result "$b" roundtrip-file "$([ -z "$why" ] && echo PASS || echo FAIL)" \
    "${why:-dom0->guest and guest->dom0 md5 match on a file target}"
  why=$(check_roundtrip "$name" xvdb "$bimg" "$want_b")
  selected roundtrip-loop && result "$b" roundtrip-loop "$([ -z "$why" ] && echo PASS || echo FAIL)" \
    "${why:-dom0->guest and guest->dom0 md5 match on a loop device target}"
  if wanted "$b" discard; then
    out=$(check_discard "$name" "$dimg" "$d_blocks" "$d_outside")
    result_of "$b" discard "$out"
    [ "${out%% *}" = PASS ] || dump_guest "$name"
  fi
  if wanted "$b" roundtrip-ram; then
    out=$(check_ram "$name" "$rimg" "$r_md5")
    result_of "$b" roundtrip-ram "$out"
    [ "${out%% *}" = PASS ] || dump_guest "$name"
  fi

  wanted "$b" per-disk && result_of "$b" per-disk "$(check_per_disk "$ndisks")"

  if [ $hp = 1 ]; then
    dd if=/dev/urandom of="$c" bs=1M count=4 2>/dev/null
    want=$(md5sum <"$c" | cut -d' ' -f1)
    st=FAIL
    if ! wait_console "$name" 'XBBG RT-DONE' 120 >/dev/null; then
      why="guest did not get to the hotplug step"
    elif ! xl block-attach "$name" "$(disk_line "$b" "$c" xvdc)" >>/lab/out/dom0/xl-$name.log 2>&1; then
      why="xl block-attach failed"
    elif ! l=$(wait_console "$name" 'XBBG XVDC-UP' 120); then
      why="xvdc never appeared in the guest"
    elif [ "$(field "$l" md5)" != "$want" ]; then
      why="xvdc md5 $(field "$l" md5) in the guest, $want in dom0"
    elif ! l=$(wait_console "$name" 'XBBG XVDC-WROTE' 60); then
      why="guest write to xvdc did not finish"
    else
      wrote=$(field "$l" md5)
      t0=$(now)
      if ! xl block-detach "$name" xvdc >>/lab/out/dom0/xl-$name.log 2>&1; then
        why="xl block-detach failed"
      elif ! wait_console "$name" 'XBBG XVDC-GONE' 90 >/dev/null; then
        why="xvdc still present in the guest after detach"
      elif [ "$(xl block-list "$name" 2>/dev/null | awk 'NR > 1' | wc -l)" != "$ndisks" ]; then
        why="xl block-list still shows xvdc"
      else
        sync
        have=$(md5sum <"$c" | cut -d' ' -f1)
        if [ "$have" = "$wrote" ]; then
          st=PASS why="attach, read, write, detach ok (detach $(elapsed "$t0") s)"
        else
          why="guest wrote xvdc md5 $wrote, dom0 reads $have"
        fi
      fi
    fi
    [ $st = FAIL ] && dump_guest "$name"
    result "$b" attach-detach $st "$why"
    rm -f "$c"
  fi

  if selected reboot; then
    st=FAIL
    if ! wait_console "$name" 'XBBG DONE' 120 >/dev/null; then
      why="first boot did not finish"
    else
      id1=$(xl domid "$name")
      t0=$(now)
      local n0 news
      n0=$(xl_bg_lines "$name")
      if ! xl reboot "$name" >>/lab/out/dom0/xl-$name.log 2>&1; then
        why="xl reboot failed"
      elif ! wait_reboot "$name" "$n0"; then
        news=$(xl_bg_news "$name" "$n0")
        why="second boot did not see the first boot's counter (or did not boot)${news:+; xl: $news}"
      elif ! wait_console "$name" 'XBBG DONE boot=1' 60 >/dev/null; then
        why="second boot did not finish"
      else
        st=PASS why="domid $id1 -> $(xl domid "$name"), second boot read the counter after $(elapsed "$t0") s"
      fi
    fi
    [ $st = FAIL ] && dump_guest "$name"
    result "$b" reboot $st "$why"
  else
    wait_console "$name" 'XBBG DONE' 120 >/dev/null
  fi

  if shutdown_guest "$name" 90; then record_shutdown "$name" ok; else record_shutdown "$name" fail; fi
  losetup -d "$lo" 2>/dev/null
  rm -f "$a" "$bimg" "$dimg" "$rimg"
}

# Waits up to 240 s for the rebooted guest to report its boot counter; gives up at once
# when the background xl could not create the domain again (a disk refused).
wait_reboot() { # name xl-log-line-before
  local n=0
  while [ $n -lt 480 ]; do
    grep -a -q 'XBBG BOOT 1' "$CON/guest-$1.log" 2>/dev/null && return 0
    tail -n +$(($2 + 1)) "$(xl_bg_log "$1")" 2>/dev/null | grep -a -q 'unable to add\|cannot (re-)build' && return 1
    sleep 0.5
    n=$((n + 1))
  done
  return 1
}

# xbbd --per-disk: the supervisor must list every disk of the running guest, each served by
# a process of its own (distinct pids that are alive), and say it is in per-disk mode.
check_per_disk() { # number of disks the guest has
  local l pids n p
  l=$(xbbctl --json list 2>&1)
  echo "$l" | grep -q '"per_disk": *true' || { echo "FAIL xbbctl list does not report per-disk mode: $(echo "$l" | head -c 200)"; return; }
  pids=$(echo "$l" | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' | sort -u)
  n=$(echo "$pids" | grep -c .)
  for p in $pids; do
    kill -0 "$p" 2>/dev/null || { echo "FAIL process $p listed by the supervisor is not running"; return; }
  done
  if [ "$n" -ge "$1" ]; then
    echo "PASS $1 disks served by $n processes of their own (pids $(echo $pids))"
  else
    echo "FAIL $1 disks but $n serving processes: $(echo "$l" | tr -d '\n' | head -c 300)"
  fi
}

# A disk whose target does not exist: `xl create` must fail quickly (block-xbbd checks the
# target before the guest starts) and say why; the daemon must survive it.
sc_missing_target() {
  local b=$1 name=missing-$1 t0 secs l split
  rm -f "$IMG/no-such-disk.img" "/lab/out/dom0/xl-create-$name.log"
  t0=$EPOCHREALTIME
  if XL_STAMP=1 guest_create "$name" small idle "$(disk_line "$b" "$IMG/no-such-disk.img" xvda)"; then
    result "$b" missing-target FAIL "xl create succeeded with a target that does not exist"
    return
  fi
  secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')
  l=$(grep -a -m1 'does not exist' "/lab/out/dom0/xl-create-$name.log" | tr -d '\r')
  # Where the time went: building the domain (loading the guest kernel under TCG) up to the
  # hotplug script's message, then libxl tearing the half-made domain down.
  split="no block-xbbd message"
  [ -n "$l" ] && split=$(echo "$l" | awk -v a="$t0" -v s="$secs" \
    '{printf "block-xbbd failed at %.1f s, teardown took %.1f s", $1 - a, s - ($1 - a)}')
  l=${l#* }
  if awk -v s="$secs" 'BEGIN {exit !(s > 30)}'; then
    result "$b" missing-target FAIL "xl create failed, but only after $secs s (limit 30 s; $split)"
  elif [ -z "$l" ]; then
    result "$b" missing-target FAIL "xl create failed after $secs s without block-xbbd's 'does not exist' (see dom0/xl-create-$name.log)"
  elif domain_exists "$name"; then
    result "$b" missing-target FAIL "xl create failed after $secs s but left the domain behind"
  elif [ "$b" = xbbd ] && ! kill -0 "$XBBD_PID" 2>/dev/null; then
    result "$b" missing-target FAIL "xl create failed after $secs s, and xbbd died"
  else
    result "$b" missing-target PASS "xl create failed after $secs s ($split): ${l#*block-xbbd: }"
  fi
}

sc_fio_verify() {
  b=$1 name=fio-$1 img=$IMG/fio.img
  rm -f "$img"
  truncate -s 64M "$img"
  if ! guest_create "$name" fio fio-verify "$(disk_line "$b" "$img" xvda)"; then
    result "$b" fio-verify FAIL "xl create failed"
    return
  fi
  t0=$(now)
  if l=$(wait_console "$name" 'XBBG FIO' 420); then
    rc=$(field "$l" rc)
    if [ "$rc" = 0 ]; then
      st=PASS why="5 fio verify jobs passed in $(elapsed "$t0") s"
    else
      st=FAIL why="fio exited $rc (verify failure or I/O error; see the guest console)"
    fi
  else
    st=FAIL why="fio never finished"
  fi
  if shutdown_guest "$name" 90; then record_shutdown "$name" ok; else record_shutdown "$name" fail; fi
  [ $st = FAIL ] && dump_guest "$name"
  result "$b" fio-verify $st "$why"
  rm -f "$img"
}

# Shutdown time: from `xl shutdown` to the domain gone, for each guest of this backend. A
# Linux guest waits 5 s for the backend to answer Closing and then logs "timeout closing
# device": that line is the stall, whatever the machine's speed.
sc_shutdown() {
  case "$SHUT_RECORD" in
  "") result "$1" shutdown FAIL "no guest was shut down" ;;
  *closing-stall* | *timeout*) result "$1" shutdown FAIL "Closing stall or timeout, secs:$SHUT_RECORD" ;;
  *) result "$1" shutdown PASS "no Closing stall, secs:$SHUT_RECORD" ;;
  esac
}

# user + nice + system + irq + softirq of all dom0 CPUs, in clock ticks (USER_HZ: 100 on x86).
dom0_busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat; }

# One fio guest per backend on the same image; the host prints the table. In demo mode
# xbbd's guest first runs the verified workload (guest/verify.fio).
bench_backend() {
  local verify=0 limit=$((BENCH_RUNTIME * 3 * 3 + 120)) v
  b=$1 name=bench-$1 img=$IMG/bench.img
  [ "$MODE" = demo ] && [ "$b" = xbbd ] && verify=1 limit=$((limit + 300))
  if [ ! -f "$img" ]; then
    dd if=/dev/zero of="$img" bs=1M count=256 2>/dev/null || {
      result "$b" bench FAIL "cannot create the 256 MiB image $img in dom0"
      return
    }
  fi
  # The bench guest gets pCPU 1 to itself and dom0 keeps pCPU 0 (see run_all), as Xen hosts
  # dedicate cores to dom0: a backend's CPU then costs dom0's core, not the guest's.
  local pin=''
  [ "${BENCH_PIN:-1}" = 1 ] && pin='cpus = "1"'
  if ! GUEST_CFG_EXTRA=$pin guest_create "$name" fio bench "$(disk_line "$b" "$img" xvda)" \
    "xbblab.runtime=$BENCH_RUNTIME xbblab.verify=$verify"; then
    [ $verify = 1 ] && result "$b" verify FAIL "xl create failed"
    result "$b" bench FAIL "xl create failed"
    return
  fi
  # xbbd-moderated: xbbd with notification moderation on (notify_batch 8), set before the
  # guest's fio starts, for an A/B against xbbd in one boot.
  [ "$b" = xbbd-moderated ] && { xbbctl set "$(xl domid "$name")/xvda" notify_batch 8 || log "xbbctl set notify_batch 8 failed"; }
  if [ $verify = 1 ]; then
    if v=$(wait_console "$name" 'XBBG VERIFY ' 400); then
      v=${v#XBBG VERIFY }
      case "$v" in
      "rc=0 jobs_ok=5 "*) result "$b" verify PASS "fio wrote 35 MiB and read every block back, crc32c-checked (5 jobs: 512 B-1 MiB, random and sequential, O_DIRECT, QD 4-16) in $(field "$v" secs) s of guest time" ;;
      *) result "$b" verify FAIL "fio verify: ${v% t=*}" ;;
      esac
    else
      result "$b" verify FAIL "no verify result from the guest"
    fi
  fi
  # dom0's busy CPU time while the fio jobs run: the backend's cost (plus xenconsoled and
  # this script's polling, the same for every backend).
  local c0="" t0 c1
  if wait_console "$name" 'XBBG BENCH-START' "$limit" >/dev/null; then
    c0=$(dom0_busy_ticks) t0=$(now)
  fi
  if wait_console "$name" 'XBBG DONE' "$limit" >/dev/null; then
    c1=$(dom0_busy_ticks)
    [ -n "$c0" ] && lab BENCHCPU "$b" "$(awk -v a="$c0" -v b="$c1" -v hz=100 'BEGIN {printf "%.1f", (b - a) / hz}')" "$(elapsed "$t0")"
    case $b in xbbd*) xbbctl --json stats >"/lab/out/dom0/$b-bench-stats.json" 2>&1 ;; esac
    n=0
    for l in $(grep -a '^XBBG BENCH ' "$CON/guest-$name.log" | tr -d '\r' | awk '{print $3 ":" $4 ":" $5 ":" $6 ":" $7 ":" $8 ":" $9 ":" $10}'); do
      lab BENCH "$b" $(echo "$l" | tr ':' ' ')
      n=$((n + 1))
    done
    if [ $n = 3 ]; then result "$b" bench PASS "3 fio jobs"; else
      dump_guest "$name"
      result "$b" bench FAIL "only $n of 3 fio jobs reported"
    fi
  else
    dump_guest "$name"
    result "$b" bench FAIL "bench guest did not finish"
  fi
  shutdown_guest "$name" 60
}

# ---- operations (issue 14): rounds of guest I/O around what an administrator does ----
# A "rounds" guest (guest/init) takes commands on its console: dom0 writes them into the pty
# xenconsoled holds for the guest (raw mode, so a line arrives as written). Each round:
# `start` (the guest answers RS-RUN once its disk completes I/O), `mark-a`, dom0's event,
# `mark-b`, `stop` (the guest waits until its disk completed more requests after mark-b
# than fit in flight, stops the I/O and reports RS-END, then writes a marker block and
# reports RS-MD5 with the O_DIRECT md5 of the whole disk). The pause is the longest gap
# between two completions in the guest that overlaps [mark-a, mark-b].

OPS_LOG=     # console log name of the guest in rounds (a migrated domain logs elsewhere)
OPS_K=0      # last round started
OPS_BROKEN=  # why the guest can take no more rounds
OPS_IMG=     # the image the guest's xvda is served from now

# A domain's id from xenstore: `xl domid` takes a second or more in this dom0 under TCG,
# and the rounds ask for it around every event.
domid_of() { # name
  local d
  for d in $(xenstore-list /local/domain 2>/dev/null); do
    [ "$(xenstore-read "/local/domain/$d/name" 2>/dev/null)" = "$1" ] && { echo "$d"; return 0; }
  done
  return 1
}

send_guest() { # domain command
  local d tty
  d=$(domid_of "$1") || return 1
  tty=$(xenstore-read "/local/domain/$d/console/tty" 2>/dev/null) || return 1
  [ -c "$tty" ] || return 1
  printf '%s\n' "$2" >"$tty"
}

# A process that exists and is not a zombie (our children stay zombies until waited for).
proc_alive() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)
  [ -n "$st" ] && [ "$st" != Z ]
}
# Waits up to $2 s for process $1 to end.
wait_exit() {
  local n=0
  while proc_alive "$1"; do
    n=$((n + 1))
    [ $n -gt $(($2 * 10)) ] && return 1
    sleep 0.1
  done
  return 0
}

# Per-disk mode: the pid of the process serving device $1 (DOMID/DEVID), from the supervisor.
disk_pid() {
  xbbctl --json list 2>/dev/null | tr -d '\n' | sed 's/}/}\n/g' | grep "\"device\": *\"$1\"" |
    sed -n 's/.*"pid": *\([0-9][0-9]*\).*/\1/p' | head -n 1
}
# Waits up to $3 s for device $1 to be served by a live process other than $2; prints its pid.
wait_new_disk_pid() {
  local n=0 p
  while [ $n -lt $(($3 * 5)) ]; do
    p=$(disk_pid "$1")
    if [ -n "$p" ] && [ "$p" != "$2" ] && proc_alive "$p"; then
      echo "$p"
      return 0
    fi
    sleep 0.2
    n=$((n + 1))
  done
  return 1
}

XBBD_STATES="0:Unknown 1:Initialising 2:InitWait 3:Initialised 4:Connected 5:Closing 6:Closed"
state_name() { echo "$1:$(echo "$XBBD_STATES" | tr ' ' '\n' | sed -n "s/^$1://p")"; }
# backend state / frontend state of the guest's xvda (51712)
vbd_states() { # domain
  local d
  d=$(domid_of "$1") || { echo "no domain"; return; }
  echo "backend $(state_name "$(xenstore-read "/local/domain/0/backend/vbd/$d/51712/state" 2>/dev/null)")," \
    "frontend $(state_name "$(xenstore-read "/local/domain/$d/device/vbd/51712/state" 2>/dev/null)")"
}

# One round on guest $1 with the event function $2 (its arguments after). The event sets
# EV_WHAT (what happened, for the PASS line) or EV_WHY (why it failed). Sets R_LINE (the
# guest's RS-END line), R_MD5, and R_WHY when the round itself could not be run.
# How many times the guest whose console is in log $1 started (its init's START lines).
guest_starts() { grep -a -c 'XBBG START ' "$CON/guest-$1.log" 2>/dev/null; }
# Prints the guest's RS-END line for round $1; fails after $4 s, or at once when the guest
# booted again: more START lines than $2 in log $3 (a migrated guest logs elsewhere, where a
# resumed guest prints none).
wait_round_end() {
  local n=0 l base
  while [ $n -lt $(($4 * 2)) ]; do
    l=$(grep -a -m1 "XBBG RS-END k=$1 " "$CON/guest-$OPS_LOG.log" 2>/dev/null) && { echo "$l" | tr -d '\r'; return 0; }
    base=$2
    [ "$OPS_LOG" = "$3" ] || base=0
    [ "$(guest_starts "$OPS_LOG")" -gt "$base" ] && return 1
    sleep 0.5
    n=$((n + 1))
  done
  return 1
}

ops_round() {
  local g=$1 ev=$2 k l starts startlog xlines
  shift 2
  R_WHY= R_LINE= R_MD5= EV_WHY= EV_WHAT=
  if [ -n "$OPS_BROKEN" ]; then
    if [ -z "${OPS_REVIVE:-}" ] || ! "$OPS_REVIVE" "$OPS_BROKEN"; then
      R_WHY="not run: $OPS_BROKEN"
      return 1
    fi
  fi
  k=$((OPS_K + 1))
  # The first round waits for the guest's boot too (tens of seconds under TCG on a busy host).
  if ! wait_console "$OPS_LOG" "XBBG RS-READY k=$k " $((k == 1 ? 300 : 120)) >/dev/null; then
    R_WHY="the guest did not get ready for round $k" OPS_BROKEN="the guest did not get ready for round $k"
    return 1
  fi
  OPS_K=$k
  send_guest "$g" start || { R_WHY="cannot write to the guest's console"; return 1; }
  if ! l=$(wait_console "$OPS_LOG" "XBBG RS-RUN k=$k " 120); then
    R_WHY="the guest's I/O did not start in round $k" OPS_BROKEN="the guest's I/O did not start in round $k"
    return 1
  fi
  if [ "$(field "$l" dead)" = 1 ]; then
    send_guest "$g" stop
    # A disk lost in an earlier step (reported there) must not decide this one's result: a
    # new guest on the same image, when the scenario has a way to make one.
    if [ -n "${OPS_REVIVE:-}" ] && [ -z "${REVIVED:-}" ] && "$OPS_REVIVE" "its disk was gone (sectors=$(field "$l" sectors))"; then
      REVIVED=1 ops_round "$g" "$ev" "$@"
      return
    fi
    R_WHY="the guest's disk was gone before this round (sectors=$(field "$l" sectors)): lost in an earlier step"
    return 1
  fi
  sleep 1
  starts=$(guest_starts "$OPS_LOG") startlog=$OPS_LOG xlines=$(xl_bg_lines "$g")
  send_guest "$g" mark-a
  EV_T0=$(now)
  "$ev" "$@"
  EV_SECS=$(elapsed "$EV_T0")
  send_guest "$g" mark-b || log "cannot send mark-b to $g"
  send_guest "$g" stop || log "cannot send stop to $g"
  if ! R_LINE=$(wait_round_end "$k" "$starts" "$startlog" 180); then
    if [ "$(guest_starts "$OPS_LOG")" -gt "$([ "$OPS_LOG" = "$startlog" ] && echo "$starts" || echo 0)" ]; then
      R_WHY="the guest booted again during the round: its domain rebooted or crashed (xl: $(xl_bg_news "$g" "$xlines"))"
      OPS_BROKEN="the guest rebooted in round $k"
    else
      R_WHY="no report from the guest within 180 s after the event: its I/O is stuck ($(vbd_states "$g"))"
      OPS_BROKEN="the guest's I/O got stuck in round $k"
    fi
    return 1
  fi
  if ! l=$(wait_console "$OPS_LOG" "XBBG RS-MD5 k=$k " 120); then
    R_WHY="the guest did not report its disk's md5 after round $k" OPS_BROKEN="no md5 after round $k"
    return 1
  fi
  R_MD5=$(field "$l" md5)
  return 0
}

# The verdict of the last round: "PASS details" or "FAIL reason". $1: the image the guest's
# xvda is served from now.
round_verdict() {
  local l=${R_LINE#XBBG RS-END } img=$1 rc ferr bad early ioerr ios before after pause other have mk off
  if [ -n "$R_WHY" ]; then
    echo "FAIL $R_WHY${EV_WHY:+; event: $EV_WHY}"
    return
  fi
  [ -n "$EV_WHY" ] && { echo "FAIL $EV_WHY (guest: ${l% t=*})"; return; }
  rc=$(field "$l" rc) ferr=$(field "$l" ferr) bad=$(field "$l" bad) early=$(field "$l" early)
  ioerr=$(field "$l" ioerr) ios=$(field "$l" ios) before=$(field "$l" before) after=$(field "$l" after)
  pause=$(field "$l" pause_ms) other=$(field "$l" other_ms)
  if [ "$early" = 1 ]; then
    echo "FAIL the guest's I/O ended by itself during the round (exit $rc, error $ferr, $bad verify/ledger errors, $ioerr I/O error lines in dmesg; $(vbd_states "$OPS_DOM"))"
  elif { [ "$rc" != 0 ] && [ "$rc" != 128 ]; } || [ "$ferr" != 0 ] || [ "$bad" != 0 ]; then
    echo "FAIL the guest's verify failed: exit $rc, error $ferr, $bad verify/ledger errors (see its console)"
  elif [ "$ioerr" != 0 ]; then
    echo "FAIL the guest's dmesg gained $ioerr I/O error lines"
  elif [ "${before:-0}" = 0 ]; then
    echo "FAIL no I/O completed in the guest before the event: the round tested nothing"
  elif [ "${after:-0}" -le "$(field "$l" qd)" ]; then
    echo "FAIL only ${after:-0} I/Os completed in the guest after the event ($(field "$l" qd) were in flight): its I/O did not resume"
  else
    sync
    have=$(md5sum <"$img" | cut -d' ' -f1)
    off=$(($(stat -c %s "$img") * 3 / 4))
    mk=$(dd if="$img" bs=4096 skip=$((off / 4096)) count=1 2>/dev/null | head -c 19)
    if [ "$have" != "$R_MD5" ]; then
      echo "FAIL after the round the guest reads md5 $R_MD5 from its disk, dom0 has $have in $img"
    elif [ "$mk" != "$(printf 'XBBLAB-ROUND-%06d' "$OPS_K")" ]; then
      echo "FAIL the guest's marker write after round $OPS_K is not in $img (found '$mk')"
    else
      echo "PASS pause ${pause} ms (longest gap between two I/O completions in the guest across the event; longest elsewhere ${other} ms); $ios I/Os verified, $after after the event, guest md5 = dom0 md5; $EV_WHAT"
    fi
  fi
}

# A round and its RESULT line; later rounds are told when the guest cannot take more.
ops_scenario() { # backend scenario guest event args...
  local b=$1 s=$2 out
  shift 2
  ops_round "$@"
  out=$(round_verdict "$OPS_IMG")
  [ -n "${POST_WHY:-}" ] && [ "${out%% *}" = PASS ] && out="FAIL $POST_WHY; round: ${out#PASS }"
  POST_WHY=
  result_of "$b" "$s" "$out"
  [ "${out%% *}" = PASS ] || dump_guest "$OPS_LOG"
}

# A new operations guest after the last one lost its disk or got stuck: the same disks, a
# fresh boot (its old console log is kept as guest-NAME.N.log).
ops_revive() { # why
  local n=1
  log "recreating $OPS_DOM: $1"
  xl destroy "$OPS_DOM" 2>/dev/null
  while [ -f "$CON/guest-$OPS_DOM.$n.log" ]; do n=$((n + 1)); done
  mv "$CON/guest-$OPS_LOG.log" "$CON/guest-$OPS_DOM.$n.log" 2>/dev/null
  guest_create "$OPS_DOM" fio rounds "$(disk_line "$OPS_BACKEND" "$OPS_IMG" xvda)$OPS_DISKS" "$OPS_ARGS" || { OPS_BROKEN="$1; recreating the guest failed"; return 1; }
  OPS_LOG=$OPS_DOM OPS_K=0 OPS_BROKEN=
  return 0
}

# ---- events ----

# Daemon mode: SIGKILL of xbbd, then a new one (it adopts the ring).
ev_kill() {
  local old=$XBBD_PID
  kill -KILL "$old"
  wait "$old" 2>/dev/null
  xbbd_start xbbd
  EV_WHAT="SIGKILL of xbbd $old, new xbbd $XBBD_PID"
}
# Per-disk mode: SIGKILL of the disk's process; the supervisor starts another.
ev_kill_disk() { # domain
  local dev old new t0
  dev="$(domid_of "$1")/51712"
  old=$(disk_pid "$dev")
  [ -n "$old" ] || { EV_WHY="the supervisor lists no process for $dev"; return; }
  t0=$(now)
  kill -KILL "$old"
  if new=$(wait_new_disk_pid "$dev" "$old" 60); then
    EV_WHAT="SIGKILL of the disk's process $old, the supervisor started $new after $(elapsed "$t0") s"
  else
    EV_WHY="the supervisor did not start a new process for $dev within 60 s of SIGKILL of $old"
  fi
}
# Per-disk mode: SIGKILL of the supervisor (its disks' processes die with it), then a new one.
ev_kill_supervisor() { # domain
  local dev old=$XBBD_PID child new
  dev="$(domid_of "$1")/51712"
  child=$(disk_pid "$dev")
  [ -n "$child" ] || { EV_WHY="the supervisor lists no process for $dev"; return; }
  kill -KILL "$old"
  wait "$old" 2>/dev/null
  if ! wait_exit "$child" 10; then
    EV_WHY="the disk's process $child still runs 10 s after its supervisor was killed"
    kill -KILL "$child"
  fi
  xbbd_start xbbd
  if new=$(wait_new_disk_pid "$dev" "$child" 60); then
    EV_WHAT="${EV_WHY:+$EV_WHY; }SIGKILL of the supervisor $old (its disk process $child died with it), new supervisor $XBBD_PID started $new"
  else
    EV_WHY="${EV_WHY:+$EV_WHY; }the new supervisor $XBBD_PID started no process for $dev within 60 s"
  fi
}
# SIGTERM of xbbd (the supervisor in per-disk mode): it must exit leaving the disk Connected;
# then a new xbbd from binary $2 (an upgrade when it is not the running one). The new one
# starts as soon as the old one is gone, as systemctl restart does: only a xenstore-read
# comes between (xl is slow under TCG and would lengthen the pause).
ev_term() { # domain binary
  local g=$1 bin=$2 old=$XBBD_PID oldexe t0 st rc child= secs newexe d be
  oldexe=$(readlink "/proc/$old/exe")
  d=$(domid_of "$g") be=/local/domain/0/backend/vbd/$(domid_of "$g")/51712/state
  per_disk_mode && child=$(disk_pid "$d/51712")
  t0=$(now)
  kill -TERM "$old"
  if ! wait_exit "$old" 60; then
    EV_WHY="xbbd $old still runs 60 s after SIGTERM"
    kill -KILL "$old"
  fi
  st=$(xenstore-read "$be" 2>/dev/null)
  xbbd_start "$bin"
  wait "$old" 2>/dev/null
  rc=$? secs=$(elapsed "$t0")
  [ "$st" = 4 ] || EV_WHY="${EV_WHY:+$EV_WHY; }after SIGTERM xbbd $old (exit $rc after $secs s) left the disk in state $(state_name "$st"), not Connected ($(vbd_states "$g") now)"
  sleep 1
  newexe=$(readlink "/proc/$XBBD_PID/exe")
  proc_alive "$XBBD_PID" || EV_WHY="${EV_WHY:+$EV_WHY; }the new xbbd ($bin) exited at once"
  EV_WHAT="SIGTERM: xbbd $old ($oldexe) exited $rc within $secs s leaving the disk Connected; new xbbd $XBBD_PID ($newexe)"
  if [ -n "$child" ]; then
    local nc
    if nc=$(wait_new_disk_pid "$d/51712" "$child" 60); then
      EV_WHAT="$EV_WHAT, its disk process $nc ($(readlink "/proc/$nc/exe"))"
      UPG_CHILD_EXE=$(readlink "/proc/$nc/exe")
    else
      EV_WHY="${EV_WHY:+$EV_WHY; }the new supervisor started no process for the disk within 60 s"
    fi
  fi
}
# An upgrade: the restart starts another executable. The host may pass a second build
# (lab --xbbd-next, installed as /usr/local/sbin/xbbd-next); else a copy of the binary.
ev_upgrade() { # domain
  local old=$XBBD_PID oldexe oldino next=/usr/local/sbin/xbbd-next
  oldexe=$(readlink "/proc/$old/exe") oldino=$(stat -L -c %i "/proc/$old/exe")
  if [ ! -x "$next" ] || [ "$(readlink -f "$oldexe")" = "$next" ]; then
    next=/usr/local/sbin/xbbd-upgraded
    rm -f "$next"
    cp "$(readlink -f "$oldexe")" "$next"
  fi
  UPG_CHILD_EXE=
  ev_term "$1" "$next"
  if [ "$(stat -L -c %i "/proc/$XBBD_PID/exe" 2>/dev/null)" = "$oldino" ]; then
    EV_WHY="${EV_WHY:+$EV_WHY; }the new xbbd runs the same executable as the old one"
  fi
  if per_disk_mode && [ -n "$UPG_CHILD_EXE" ] && [ "$UPG_CHILD_EXE" != "$next" ]; then
    EV_WHY="${EV_WHY:+$EV_WHY; }the disk's new process runs $UPG_CHILD_EXE, not the upgraded $next"
  fi
  EV_WHAT="upgrade $oldexe -> $next: $EV_WHAT"
}

# Expects a command (an xl call) to fail within 30 s saying "in use". Sets REFUSE_WHY (empty
# when it was refused so), REFUSE_SECS and REFUSE_LINE (xl's line with the reason).
expect_refused() { # what log command...
  local what=$1 logf=$2 t0 rc
  shift 2
  t0=$EPOCHREALTIME
  "$@" >"$logf" 2>&1
  rc=$?
  REFUSE_SECS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')
  REFUSE_LINE=$(grep -a -i -m1 'in use' "$logf" | tr -d '\r' | sed 's/^libxl: error: [^ ]* //')
  REFUSE_WHY=
  if [ $rc = 0 ]; then
    REFUSE_WHY="$what succeeded"
  elif [ -z "$REFUSE_LINE" ]; then
    REFUSE_WHY="$what failed after $REFUSE_SECS s without saying 'in use' (last line: $(grep -a -v '^ *$' "$logf" | tail -n 1 | tr -d '\r'))"
  elif awk -v s="$REFUSE_SECS" 'BEGIN {exit !(s > 30)}'; then
    REFUSE_WHY="$what was refused, but only after $REFUSE_SECS s (limit 30 s)"
  fi
}
# A second writer of the guest's image: another guest, then a second disk of the same guest.
ev_exclusive() { # domain backend
  local g=$1 b=$2 w1 w2 s1 l1 s2 l2 d2 n0 t0
  n0=$(xl block-list "$g" 2>/dev/null | awk 'NR > 1' | wc -l)
  rm -f "$CON/guest-writer2-$b.log"
  cat >"$CFG/writer2-$b.cfg" <<CFGEOF
name = "writer2-$b"
kernel = "/lab/boot/vmlinux"
ramdisk = "/lab/boot/guest-small.cpio"
extra = "console=hvc0 xbblab.job=idle"
memory = 128
disk = [ '$(disk_line "$b" "$OPS_IMG" xvda)' ]
on_poweroff = "destroy"
CFGEOF
  expect_refused "xl create of a second guest with $OPS_IMG writable" /lab/out/dom0/xl-create-writer2-$b.log xl -v create "$CFG/writer2-$b.cfg"
  w1=$REFUSE_WHY s1=$REFUSE_SECS l1=$REFUSE_LINE
  if domain_exists "writer2-$b"; then
    [ -n "$w1" ] || w1="xl create was refused but left the domain writer2-$b"
    xl destroy "writer2-$b" 2>/dev/null
  fi
  expect_refused "xl block-attach of $OPS_IMG writable as a second disk of $g" /lab/out/dom0/xl-attach-$b.log xl block-attach "$g" "$(disk_line "$b" "$OPS_IMG" xvdd)"
  w2=$REFUSE_WHY s2=$REFUSE_SECS l2=$REFUSE_LINE
  # libxl does not clean up after a failed hotplug of `xl block-attach` (it does after a
  # failed `xl create`, by destroying the domain): the refused disk stays in xenstore and in
  # `xl block-list` until `xl block-detach`, which must then remove it.
  d2=
  if [ "$(xl block-list "$g" 2>/dev/null | awk 'NR > 1' | wc -l)" != "$n0" ]; then
    t0=$(now)
    if ! xl block-detach "$g" xvdd >>"/lab/out/dom0/xl-attach-$b.log" 2>&1; then
      w2="${w2:+$w2; }xl block-detach of the refused disk failed (dom0/xl-attach-$b.log)"
    elif [ "$(xl block-list "$g" 2>/dev/null | awk 'NR > 1' | wc -l)" != "$n0" ]; then
      w2="${w2:+$w2; }xl block-list still shows the refused disk after xl block-detach"
    else
      d2="; libxl left the refused disk in xl block-list, xl block-detach removed it in $(elapsed "$t0") s"
    fi
  fi
  if [ -n "$w1$w2" ]; then
    EV_WHY=$(echo "${w1:+$w1; }$w2" | sed 's/; $//')
  else
    EV_WHAT="xl create refused after $s1 s and xl block-attach after $s2 s, both saying: $l1$d2"
  fi
}
# A second xbbd while one runs must refuse to start, saying so.
ev_second_daemon() {
  local out rc t0 secs l
  t0=$(now)
  # shellcheck disable=SC2086
  out=$(timeout -s KILL 15 xbbd $XBBD_ARGS 2>&1)
  rc=$? secs=$(elapsed "$t0")
  echo "$out" >/lab/out/dom0/xbbd-second.log
  l=$(echo "$out" | grep -i -m1 already)
  if [ $rc = 137 ]; then
    EV_WHY="a second xbbd was still running 15 s after it started (killed): it did not refuse ($(echo "$out" | grep -m1 -i 'error\|closed' || echo "$out" | tail -n 1))"
    # It may have taken the control socket's path and the guests' devices: a fresh xbbd
    # for the scenarios after this one.
    kill -KILL "$XBBD_PID" 2>/dev/null
    wait "$XBBD_PID" 2>/dev/null
    xbbd_start xbbd
    log "second-daemon: restarted the lab's xbbd (pid $XBBD_PID) after the second one ran"
  elif [ $rc = 0 ]; then
    EV_WHY="a second xbbd exited 0 after $secs s"
  elif [ -z "$l" ]; then
    EV_WHY="a second xbbd exited $rc after $secs s without saying 'already': $(echo "$out" | tail -n 1)"
  else
    EV_WHAT="a second xbbd exited $rc after $secs s: $l"
  fi
  proc_alive "$XBBD_PID" || EV_WHY="${EV_WHY:+$EV_WHY; }the first xbbd died"
}
# xbbctl pause, copy the image, xbbctl resume onto the copy.
ev_pause_resume() { # domain
  local dev copy out t0 tp tc
  dev="$(domid_of "$1")/xvda" copy=$IMG/ops-copy.img
  t0=$(now)
  out=$(xbbctl pause "$dev" 2>&1) || { EV_WHY="xbbctl pause $dev failed: $out"; return; }
  tp=$(elapsed "$t0")
  t0=$(now)
  rm -f "$copy"
  cp "$OPS_IMG" "$copy" || { EV_WHY="cp of the paused image failed"; xbbctl resume "$dev" >/dev/null 2>&1; return; }
  tc=$(elapsed "$t0")
  PR_ORIG=$OPS_IMG PR_ORIG_MD5=$(md5sum <"$OPS_IMG" | cut -d' ' -f1)
  t0=$(now)
  if ! out=$(xbbctl resume "$dev" "$copy" 2>&1); then
    EV_WHY="xbbctl resume $dev $copy failed: $out"
    xbbctl resume "$dev" >/dev/null 2>&1 # do not leave the guest's requests held
    return
  fi
  OPS_IMG=$copy
  EV_WHAT="xbbctl pause $tp s, cp $tc s, xbbctl resume onto the copy $(elapsed "$t0") s"
}
# Whether the original image stayed as it was at the pause (checked after the round).
check_pause_original() {
  local mk off
  [ -n "${PR_ORIG:-}" ] || return
  off=$(($(stat -c %s "$PR_ORIG") * 3 / 4))
  mk=$(dd if="$PR_ORIG" bs=4096 skip=$((off / 4096)) count=1 2>/dev/null | head -c 19)
  if [ "$mk" = "$(printf 'XBBLAB-ROUND-%06d' "$OPS_K")" ]; then
    POST_WHY="the guest's write after the resume reached the original image $PR_ORIG"
  elif [ "$(md5sum <"$PR_ORIG" | cut -d' ' -f1)" != "$PR_ORIG_MD5" ]; then
    POST_WHY="the original image $PR_ORIG changed after the resume onto the copy"
  fi
}
# xl save + xl restore; the domain comes back with a new domid.
ev_save_restore() { # domain backend
  local g=$1 f=$IMG/$1.save d0 t0 ts sz
  d0=$(domid_of "$g")
  t0=$(now)
  xl save "$g" "$f" >>"/lab/out/dom0/xl-$g.log" 2>&1 || { EV_WHY="xl save failed (dom0/xl-$g.log)"; return; }
  ts=$(elapsed "$t0") sz=$(($(stat -c %s "$f") / 1048576))
  domain_exists "$g" && { EV_WHY="the domain still exists after xl save"; return; }
  t0=$(now)
  xl restore "$f" >>"/lab/out/dom0/xl-$g.log" 2>&1 || { EV_WHY="xl restore failed after $(elapsed "$t0") s (dom0/xl-$g.log)"; rm -f "$f"; return; }
  EV_WHAT="xl save $ts s ($sz MiB), xl restore $(elapsed "$t0") s, domid $d0 -> $(domid_of "$g")"
  rm -f "$f"
  [ "$2" = xbbd ] && OLD_DOMID=$d0
}
# xl migrate to this host, without ssh: `-s ''` makes xl run the "host" argument as the
# receiving command (xl(1)). The new domain is NAME--incoming until the end.
ev_migrate() { # domain backend
  local g=$1 d0 t0
  d0=$(domid_of "$g")
  t0=$(now)
  if ! xl migrate -s '' "$g" 'xl migrate-receive' >>"/lab/out/dom0/xl-$g.log" 2>&1; then
    EV_WHY="xl migrate to localhost failed after $(elapsed "$t0") s (dom0/xl-$g.log; $(domain_exists "$g" && echo "the domain is still there" || echo "the domain is gone"))"
    return
  fi
  EV_WHAT="xl migrate to localhost $(elapsed "$t0") s, domid $d0 -> $(domid_of "$g")"
  # xenconsoled names a guest's log after the domain's name when it first sees it.
  [ -f "$CON/guest-$g--incoming.log" ] && OPS_LOG="$g--incoming"
  [ "$2" = xbbd ] && OLD_DOMID=$d0
}
# xbbd must have let go of the devices of the domain that went away (save, migration).
check_old_released() {
  local n=0
  [ -n "${OLD_DOMID:-}" ] || return
  while xbbctl --json list 2>/dev/null | grep -q "\"device\": *\"$OLD_DOMID/"; do
    n=$((n + 1))
    if [ $n -gt 50 ]; then
      POST_WHY="xbbd still lists a device of the old domain $OLD_DOMID 10 s after the round"
      break
    fi
    sleep 0.2
  done
  OLD_DOMID=
}

# ---- resize (the guest's size watcher prints SIZE lines for xvdb) ----
# Waits up to $3 s for the guest to report xvdb at $2 sectors; prints the line.
wait_size() { wait_console "$1" "XBBG SIZE dev=xvdb sectors=$2 " "$3"; }
tail_md5() { dd if="$1" bs=1M skip=$(($(stat -c %s "$1") / 1048576 - 1)) count=1 2>/dev/null | md5sum | cut -d' ' -f1; }
sc_resize() { # backend guest image
  local b=$1 g=$2 img=$3 dev t0 l want out st= why rc xs
  dev="$(domid_of "$g")/xvdb"
  xs="/local/domain/0/backend/vbd/$(domid_of "$g")/51728/sectors"
  if ! wait_size "$OPS_LOG" 32768 60 >/dev/null; then
    for s in resize-grow resize-ctl resize-shrink; do
      wanted "$b" $s && result "$b" $s FAIL "the guest never reported xvdb's first size (16 MiB)"
    done
    return
  fi
  # 1. grow the file: the guest must see it without being told.
  t0=$EPOCHREALTIME
  if ! out=$(truncate -s +8M "$img" 2>&1) || [ "$(stat -c %s "$img")" != 25165824 ]; then
    st=FAIL why="truncate -s +8M of the image failed in dom0 ($out; size $(stat -c %s "$img"))"
  fi
  want=$(tail_md5 "$img")
  if [ -n "${st:-}" ]; then
    :
  elif ! l=$(wait_size "$OPS_LOG" 49152 15); then
    st=FAIL why="the guest still sees $(xenstore-read "$xs" 2>/dev/null) sectors (xenstore) 15 s after the image grew 16 -> 24 MiB"
  elif [ "$(field "$l" tail)" != "$want" ]; then
    st=FAIL why="the guest saw 24 MiB but reads md5 $(field "$l" tail) in the last MiB, dom0 has $want"
  else
    st=PASS why="image grew 16 -> 24 MiB with truncate; the guest saw 49152 sectors after $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}') s and read the new last MiB (md5 = dom0's)"
  fi
  selected resize-grow && result "$b" resize-grow $st "$why"
  # 2. grow again and tell xbbd: xbbctl resize. (Growth xbbd noticed by itself meanwhile
  # would show here as the guest seeing 32 MiB before xbbctl ran; both ways end there.)
  truncate -s +8M "$img"
  t0=$EPOCHREALTIME
  out=$(xbbctl resize "$dev" 2>&1)
  rc=$?
  if [ $rc != 0 ]; then
    st=FAIL why="xbbctl resize $dev failed ($rc): $(echo "$out" | head -n 1)"
    # A resize that xbbd's own size watcher began at the same moment makes xbbctl's fail.
    grep -q "$(echo "$dev" | cut -d/ -f1)/51728: .* grew from 25165824 to 33554432" /lab/out/dom0/xbbd.log &&
      why="$why (xbbd's size watcher noticed the growth and was resizing the disk at that moment)"
  elif ! l=$(wait_size "$OPS_LOG" 65536 15); then
    st=FAIL why="xbbctl resize $dev returned 0 but the guest still sees $(xenstore-read "$xs" 2>/dev/null) sectors (xenstore) after 15 s"
  else
    st=PASS why="grown to 32 MiB + xbbctl resize: the guest saw 65536 sectors after $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}') s"
  fi
  selected resize-ctl && result "$b" resize-ctl $st "$why"
  # 3. shrink the file 8 MiB below what the guest was told: xbbctl resize must refuse, and
  # the guest must keep its size.
  if selected resize-shrink; then
    local seen sectors small
    sectors=$(xenstore-read "$xs" 2>/dev/null)
    small=$((${sectors:-0} * 512 - 8388608))
    seen=$(grep -a -c 'XBBG SIZE dev=xvdb ' "$CON/guest-$OPS_LOG.log")
    truncate -s "$small" "$img"
    out=$(xbbctl resize "$dev" 2>&1)
    rc=$?
    sleep 5
    # A refusal counts only from an xbbctl that knows resize (an unknown command fails too).
    if [ $rc != 0 ] && { echo "$out" | grep -q -i 'unknown command'; }; then
      st=FAIL why="cannot be judged: xbbctl has no resize command (it said: $(echo "$out" | head -n 1))"
    elif [ $rc = 0 ]; then
      st=FAIL why="xbbctl resize $dev of a file shrunk to $small bytes (the guest has $sectors sectors) returned 0: $out"
    elif [ "$(grep -a -c 'XBBG SIZE dev=xvdb ' "$CON/guest-$OPS_LOG.log")" != "$seen" ]; then
      st=FAIL why="xbbctl resize refused ($out) but the guest's size changed: $(grep -a 'XBBG SIZE dev=xvdb ' "$CON/guest-$OPS_LOG.log" | tail -n 1 | tr -d '\r')"
    elif [ "$(xenstore-read "$xs" 2>/dev/null)" != "$sectors" ]; then
      st=FAIL why="xbbctl resize refused but xenstore's sectors went $sectors -> $(xenstore-read "$xs" 2>/dev/null)"
    else
      st=PASS why="file shrunk 8 MiB below the guest's $sectors sectors: xbbctl resize refused ($rc: $(echo "$out" | head -n 1)), the guest and xenstore keep $sectors sectors"
    fi
    result "$b" resize-shrink $st "$why"
    truncate -s $((sectors * 512)) "$img"
  fi
}

# Read-only sharing: a second guest gets the ops guest's read-only image, also read-only.
sc_shared_ro() { # backend image md5
  local b=$1 name=ro-$1 l1 l2 st why
  if ! l1=$(wait_console "$OPS_LOG" 'XBBG RO dev=xvdc ' 60); then
    result "$b" shared-ro FAIL "the first guest did not report its read-only disk"
    return
  fi
  if ! GUEST_MEM=128 guest_create "$name" small readonly "vdev=xvda, access=ro, backendtype=phy, script=block-xbbd, target=$2"; then
    st=FAIL why="xl create of a second guest with the image read-only failed: $(grep -a -i -m1 'error\|in use' "/lab/out/dom0/xl-create-$name.log" | tr -d '\r')"
  elif ! l2=$(wait_console "$name" 'XBBG RO dev=xvda ' 120); then
    st=FAIL why="the second guest did not report its read-only disk"
  elif [ "$(field "$l1" md5)" != "$3" ] || [ "$(field "$l2" md5)" != "$3" ]; then
    st=FAIL why="md5 of the shared image: first guest $(field "$l1" md5), second $(field "$l2" md5), dom0 $3"
  elif [ "$(field "$l1" ro)" != 1 ] || [ "$(field "$l2" ro)" != 1 ]; then
    st=FAIL why="the shared disk is not read-only in the guests (getro: $(field "$l1" ro), $(field "$l2" ro))"
  else
    st=PASS why="two guests read the image read-only at once (both md5 = dom0's, both read-only)"
  fi
  result "$b" shared-ro $st "$why"
  [ $st = FAIL ] && dump_guest "$name"
  xl destroy "$name" 2>/dev/null
}

OPS_SCENARIOS="restart-kill restart-kill-supervisor exclusive shared-ro resize-grow resize-ctl resize-shrink pause-resume restart-term upgrade second-daemon"
# The operations guest (xbbd): a fio guest whose xvda (16 MiB) takes rounds of verified I/O
# while dom0 restarts, upgrades, pauses and probes xbbd; xvdb is grown and shrunk (resize);
# xvdc is an image it shares read-only with a second guest.
sc_ops() {
  local b=$1 name=ops-$1 grow=$IMG/grow.img shared=$IMG/shared.img disks args s_md5 resized out
  OPS_IMG=$IMG/ops.img OPS_LOG=$name OPS_DOM=$name OPS_K=0 OPS_BROKEN= PR_ORIG=
  rm -f "$OPS_IMG" "$IMG/ops-copy.img" "$grow" "$shared"
  truncate -s 16M "$OPS_IMG"
  disks="" args=""
  if wanted "$b" resize-grow || wanted "$b" resize-ctl || wanted "$b" resize-shrink; then
    truncate -s 16M "$grow"
    disks="$disks', '$(disk_line "$b" "$grow" xvdb)" args="$args xbblab.watch=xvdb"
  fi
  if wanted "$b" shared-ro; then
    dd if=/dev/urandom of="$shared" bs=1M count=8 2>/dev/null
    s_md5=$(md5sum <"$shared" | cut -d' ' -f1)
    disks="$disks', 'vdev=xvdc, access=ro, backendtype=phy, script=block-xbbd, target=$shared" args="$args xbblab.ro=xvdc"
  fi
  OPS_DISKS=$disks OPS_ARGS=$args OPS_BACKEND=$b
  if ! guest_create "$name" fio rounds "$(disk_line "$b" "$OPS_IMG" xvda)$disks" "$args"; then
    for s in $OPS_SCENARIOS; do wanted "$b" $s && result "$b" $s FAIL "xl create of the operations guest failed"; done
    rm -f "$OPS_IMG" "$grow" "$shared"
    return
  fi
  resized=0 OPS_REVIVE=ops_revive
  for s in $OPS_SCENARIOS; do
    wanted "$b" $s || continue
    case $s in
    restart-kill)
      if per_disk_mode; then ops_scenario "$b" $s "$name" ev_kill_disk "$name"; else ops_scenario "$b" $s "$name" ev_kill; fi ;;
    restart-kill-supervisor) ops_scenario "$b" $s "$name" ev_kill_supervisor "$name" ;;
    exclusive) ops_scenario "$b" $s "$name" ev_exclusive "$name" "$b" ;;
    shared-ro) sc_shared_ro "$b" "$shared" "$s_md5" ;;
    resize-grow | resize-ctl | resize-shrink)
      # One sequence reports all three (grow, then xbbctl resize, then a refused shrink).
      [ $resized = 0 ] && sc_resize "$b" "$name" "$grow"
      resized=1 ;;
    pause-resume)
      ops_round "$name" ev_pause_resume "$name"
      check_pause_original
      out=$(round_verdict "$OPS_IMG")
      [ -n "${POST_WHY:-}" ] && [ "${out%% *}" = PASS ] && out="FAIL $POST_WHY; round: ${out#PASS }"
      POST_WHY=
      [ "${out%% *}" = PASS ] && out="$out; the guest's writes after the resume reach the copy, the original is as it was at the pause"
      result_of "$b" $s "$out"
      [ "${out%% *}" = PASS ] || dump_guest "$OPS_LOG" ;;
    restart-term) ops_scenario "$b" $s "$name" ev_term "$name" xbbd ;;
    upgrade) ops_scenario "$b" $s "$name" ev_upgrade "$name" ;;
    second-daemon) ops_scenario "$b" $s "$name" ev_second_daemon ;;
    esac
    # resize-ctl/-shrink ran with resize-grow
  done
  OPS_REVIVE=
  send_guest "$name" quit
  if shutdown_guest "$name" 90; then record_shutdown "$name" ok; else record_shutdown "$name" fail; fi
  rm -f "$OPS_IMG" "$IMG/ops-copy.img" "$grow" "$shared"
}

# Save/restore (a PV guest) and local migration (a PVH guest) of a small guest (128 MiB: the
# save file and the second copy a local migration needs both fit) whose shell writer keeps
# writing and checking. Debian's Xen 4.17 is built without shadow paging, which the log-dirty
# mode of a PV guest's live migration needs ("Failed to enable logdirty: 95"); a PVH guest
# uses HAP instead, which Xen offers under QEMU's TCG when the CPU has NPT (lab: -cpu qemu64,+npt).
sc_save_migrate() { # backend scenario
  local b=$1 s=$2 name type=pv ev=ev_save_restore out
  [ "$s" = migrate ] && type=pvh ev=ev_migrate
  name=$s-$b
  OPS_IMG=$IMG/$name.img OPS_LOG=$name OPS_DOM=$name OPS_K=0 OPS_BROKEN= OLD_DOMID= OPS_REVIVE=
  if [ $type = pvh ] && ! xl info | grep -q '^virt_caps.* hap'; then
    result "$b" "$s" FAIL "this Xen cannot migrate a PV guest (built without shadow paging: log-dirty unsupported) and offers no HAP for a PVH guest ($(xl info | grep virt_caps | tr -s ' '); QEMU needs -cpu ...,+npt)"
    return
  fi
  rm -f "$OPS_IMG"
  truncate -s 16M "$OPS_IMG"
  if ! GUEST_MEM=128 GUEST_CFG_EXTRA="type = \"$type\"" guest_create "$name" small rounds "$(disk_line "$b" "$OPS_IMG" xvda)"; then
    result "$b" "$s" FAIL "xl create of a $type guest failed"
    rm -f "$OPS_IMG"
    return
  fi
  local first=
  ops_round "$name" $ev "$name" "$b"
  # A PVH guest under TCG's emulated nested paging has rebooted itself in the middle of a
  # live migration's log-dirty phase (no kernel message: a CPU fault, not I/O). Once, a new
  # guest gets a second try, and the result says so.
  if [ $type = pvh ] && case "$R_WHY" in *"booted again"*) true ;; *) false ;; esac; then
    first="first attempt: $R_WHY${EV_WHY:+ / $EV_WHY}"
    log "migrate: $first; trying once more with a new guest"
    xl destroy "$name" 2>/dev/null
    mv "$CON/guest-$name.log" "$CON/guest-$name.1.log" 2>/dev/null
    OPS_K=0 OPS_BROKEN= OPS_LOG=$name
    if GUEST_MEM=128 GUEST_CFG_EXTRA="type = \"$type\"" guest_create "$name" small rounds "$(disk_line "$b" "$OPS_IMG" xvda)"; then
      ops_round "$name" $ev "$name" "$b"
    else
      R_WHY="xl create of a second $type guest failed"
    fi
  fi
  check_old_released
  out=$(round_verdict "$OPS_IMG")
  [ -n "${POST_WHY:-}" ] && [ "${out%% *}" = PASS ] && out="FAIL $POST_WHY; round: ${out#PASS }"
  POST_WHY=
  result_of "$b" "$s" "$out ($type guest${first:+; $first})"
  [ "${out%% *}" = PASS ] || dump_guest "$OPS_LOG"
  send_guest "$name" quit
  if shutdown_guest "$name" 90; then record_shutdown "$name" ok; else record_shutdown "$name" fail; fi
  rm -f "$OPS_IMG"
}

run_scenario() { # backend name-of-step function args...
  local ts b=$1 step=$2
  shift 2
  ts=$(now)
  "$@"
  destroy_all_guests
  collect_logs
  lab PHASE "$b/$step" secs=$(elapsed "$ts")
}

run_all() {
  local tb
  # Benchmarks: dom0 on pCPU 0, the bench guest on pCPU 1 (bench_backend).
  [ "$MODE" != run ] && [ "${BENCH_PIN:-1}" = 1 ] && { xl vcpu-pin Domain-0 all 0 || log "xl vcpu-pin Domain-0 all 0 failed"; }
  for b in $BACKENDS; do
    tb=$(now)
    SHUT_RECORD=
    if ! backend_enter "$b"; then
      for s in $SCENARIOS; do applies "$b" "$s" && result "$b" "$s" FAIL "backend $b could not be started in dom0"; done
      if [ "$MODE" != run ]; then
        [ "$MODE" = demo ] && [ "$b" = xbbd ] && result "$b" verify FAIL "backend $b could not be started in dom0"
        result "$b" bench FAIL "backend $b could not be started in dom0"
      fi
      backend_leave "$b"
      continue
    fi
    if [ "$MODE" != run ]; then
      bench_backend "$b"
      destroy_all_guests
      collect_logs
    else
      # First: a failed create must leave the backend able to serve the guests after it.
      wanted "$b" missing-target && run_scenario "$b" missing-target sc_missing_target "$b"
      if selected roundtrip-file || selected roundtrip-loop || selected attach-detach ||
        selected reboot || selected shutdown || wanted "$b" discard || wanted "$b" roundtrip-ram ||
        wanted "$b" per-disk; then
        run_scenario "$b" lifecycle sc_lifecycle "$b"
      fi
      selected fio-verify && run_scenario "$b" fio-verify sc_fio_verify "$b"
      wanted "$b" save-restore && run_scenario "$b" save-restore sc_save_migrate "$b" save-restore
      wanted "$b" migrate && run_scenario "$b" migrate sc_save_migrate "$b" migrate
      local s ops=0
      for s in $OPS_SCENARIOS; do wanted "$b" $s && ops=1; done
      [ $ops = 1 ] && run_scenario "$b" operations sc_ops "$b"
      selected shutdown && sc_shutdown "$b"
    fi
    backend_leave "$b"
    lab PHASE "backend-$b" secs=$(elapsed "$tb")
  done
}
