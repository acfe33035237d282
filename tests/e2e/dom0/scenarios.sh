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
    # shellcheck disable=SC2086
    local variant=''
    [ "$1" = xbbd-copy ] && variant=--no-persistent-grants
    xbbd $XBBD_ARGS $variant >>/lab/out/dom0/xbbd.log 2>&1 &
    XBBD_PID=$!
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
  local name=$1 kind=$2 job=$3 disk=$4 mem=256 t0
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
  roundtrip-ram | missing-target) [ "$1" = xbbd ] ;;
  discard) [ "$1" != qdisk ] ;;
  per-disk) [ "$1" = xbbd ] && case " $XBBD_ARGS " in *" --per-disk "*) true ;; *) false ;; esac ;;
  *) return 0 ;;
  esac
}
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
      if ! xl reboot "$name" >>/lab/out/dom0/xl-$name.log 2>&1; then
        why="xl reboot failed"
      elif ! wait_console "$name" 'XBBG BOOT 1' 240 >/dev/null; then
        why="second boot did not see the first boot's counter (or did not boot)"
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
      selected shutdown && sc_shutdown "$b"
    fi
    backend_leave "$b"
    lab PHASE "backend-$b" secs=$(elapsed "$tb")
  done
}
