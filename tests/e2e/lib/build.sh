# shellcheck shell=bash
# Builds the lab's boot artifacts from Debian packages: the decompressed Xen ELF, the Debian
# kernel, the dom0 base initramfs and two guest initramfs images (small: busybox only; fio:
# busybox + fio). Sourced by tests/e2e/lab; expects LAB_DIR, WORK and the log helpers.
#
# Packages that must not be installed on the host (the hypervisor and the kernel rewrite the
# boot loader configuration, xen-utils enables init scripts and pulls udev) are fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` into a private sysroot. Tools that are
# harmless to install (qemu, fio, kmod, cpio) come from the host (tests/e2e/packages.txt).
# Everything is cached under a key made of the package versions and of the files that shape
# the images, so a second run only rebuilds the small per-run overlay.

XEN_VER_PKGS=(xen-hypervisor-4.17-amd64 xen-utils-4.17 xen-utils-common xenstore-utils
  libxenmisc4.17 libxenstore4 libxencall1 libxenevtchn1 libxenforeignmemory1 libxengnttab1
  libxentoollog1 libxentoolcore1 libxendevicemodel1 libxenhypfs1)
OTHER_DL_PKGS=(busybox-static)
# Host packages whose files are copied into the images; their versions are part of the key.
HOST_PKGS=(qemu-system-xen qemu-system-data fio kmod bash util-linux coreutils libc6 libgcc-s1)

# Candidate versions of the downloaded packages, read with one apt-cache call (it is slow).
declare -A CAND=()
load_candidates() {
  local p v
  while read -r p v; do CAND[$p]=$v; done < <(apt-cache policy "$@" 2>/dev/null |
    awk '/^[^ ]/ {p = $1; sub(/:$/, "", p)} /Candidate:/ {print p, $2}')
}
apt_candidate() { echo "${CAND[$1]:-}"; }

# apt-cache answers nothing before the first `apt-get update` on a fresh machine.
ensure_apt_lists() {
  local v
  v=$(apt-cache policy busybox-static 2>/dev/null | awk '/Candidate:/ {print $2; exit}')
  if [[ -z $v || $v == "(none)" ]]; then
    log "apt lists are empty: running apt-get update"
    $SUDO apt-get update -qq || die "apt-get update failed; the lab needs Debian's package lists"
  fi
}

kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}

host_version() {
  dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo missing
}

# Prints "pkg=version" for everything the images are made of, one per line.
lab_inputs() {
  local p
  for p in "${XEN_VER_PKGS[@]}" "${OTHER_DL_PKGS[@]}" "$KPKG"; do
    echo "$p=$(apt_candidate "$p")"
  done
  for p in "${HOST_PKGS[@]}"; do
    echo "host:$p=$(host_version "$p")"
  done
  # The files that decide what goes into the cached images.
  sha256sum "$LAB_DIR/lib/build.sh" "$LAB_DIR"/guest/* | awk '{print $1}'
}

fetch_debs() {
  local debdir=$WORK/debs p v f missing=()
  mkdir -p "$debdir"
  for p in "${XEN_VER_PKGS[@]}" "${OTHER_DL_PKGS[@]}" "$KPKG"; do
    v=$(apt_candidate "$p")
    [[ -n "$v" && "$v" != "(none)" ]] || die "package $p has no candidate version in apt"
    # Debian file names encode the epoch colon as %3a.
    f=$(compgen -G "$debdir/${p}_${v/:/%3a}_*.deb" || true)
    [[ -n "$f" ]] || missing+=("$p=$v")
  done
  if ((${#missing[@]})); then
    log "downloading ${#missing[@]} Debian packages into $debdir"
    # apt's sandbox user cannot write into root-owned work trees; download in a temp dir.
    local tmp
    tmp=$(mktemp -d /var/tmp/xbb-lab-dl.XXXXXX)
    chmod 777 "$tmp"
    (cd "$tmp" && apt-get download -q "${missing[@]}" >/dev/null 2>"$tmp/err") ||
      { cat "$tmp/err" >&2; rm -rf "$tmp"; die "apt-get download failed"; }
    mv "$tmp"/*.deb "$debdir"/
    rm -rf "$tmp"
  fi
}

build_sysroot() {
  local sys=$1 p v f
  rm -rf "$sys"
  mkdir -p "$sys"
  for p in "${XEN_VER_PKGS[@]}" "${OTHER_DL_PKGS[@]}" "$KPKG"; do
    v=$(apt_candidate "$p")
    f=$(compgen -G "$WORK/debs/${p}_${v/:/%3a}_*.deb")
    dpkg-deb -x "$f" "$sys"
  done
  KVER=$(basename "$(compgen -G "$sys/lib/modules/*")")
  # The deb ships no modules.dep: its postinst runs depmod.
  depmod -b "$sys" "$KVER"
}

# Merged-/usr skeleton shared by dom0 and guests.
make_skeleton() {
  local r=$1 d
  mkdir -p "$r"/usr/{bin,sbin,lib,lib64} "$r"/{dev,proc,sys,run,tmp,etc,root,mnt,var}
  for d in bin sbin lib lib64; do ln -sfn "usr/$d" "$r/$d"; done
  ln -sfn ../run "$r/var/run"
  chmod 1777 "$r/tmp"
  echo 'root:x:0:0:root:/root:/bin/sh' >"$r/etc/passwd"
  echo 'root:x:0:' >"$r/etc/group"
  : >"$r/etc/fstab"
}

install_busybox() {
  local r=$1 sys=$2 a
  install -m 0755 "$sys/bin/busybox" "$r/usr/bin/busybox"
  # Applet links only where no real tool was installed (real ones are copied later and win).
  for a in $("$r/usr/bin/busybox" --list); do
    [[ $a == busybox ]] && continue
    [[ -e "$r/usr/bin/$a" ]] || ln -s busybox "$r/usr/bin/$a"
  done
}

# Copies one file to the same path inside the image root; a path under the sysroot is taken
# relative to it. Replaces busybox applet links.
copy_path() {
  local r=$1 sys=$2 src=$3 rel
  rel=${src#"$sys"}
  rel=/${rel#/}
  # merged-/usr: /lib/x -> /usr/lib/x etc.
  case $rel in
    /bin/* | /sbin/* | /lib/* | /lib64/*) rel=/usr$rel ;;
  esac
  mkdir -p "$r$(dirname "$rel")"
  rm -f "$r$rel"
  cp -L "$src" "$r$rel"
}

# Copies an ELF program plus every shared library ldd resolves for it (sysroot libraries first,
# so the Xen tools get the libxen* of their own version). A library ldd cannot find is fatal:
# the image would fail at run time in a much less readable way.
copy_elf() {
  local r=$1 sys=$2 src=$3 dest=${4:-} lib
  if [[ -n $dest ]]; then
    mkdir -p "$r$(dirname "$dest")"
    rm -f "$r$dest"
    cp -L "$src" "$r$dest"
  else
    copy_path "$r" "$sys" "$src"
  fi
  local ldpath="$sys/usr/lib/x86_64-linux-gnu:$sys/lib/x86_64-linux-gnu"
  local out
  out=$(LD_LIBRARY_PATH=$ldpath ldd "$src" 2>&1) || {
    [[ $out == *"not a dynamic executable"* ]] && return 0
    die "ldd $src failed: $out"
  }
  if grep -q 'not found' <<<"$out"; then
    die "ldd $src: missing libraries:"$'\n'"$(grep 'not found' <<<"$out")"
  fi
  for lib in $(awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}' <<<"$out"); do
    [[ -e "$r/${lib#/}" || -e "$r/usr/${lib#/}" ]] && continue
    copy_path "$r" "$sys" "$lib"
  done
}

# Copies kernel modules named by their file base name, with their dependencies, and runs depmod
# in the image so `modprobe NAME` works there.
copy_modules() {
  local r=$1 sys=$2
  shift 2
  local mdir=lib/modules/$KVER m rel dep
  mkdir -p "$r/usr/$mdir"
  cp "$sys/$mdir"/modules.{builtin,builtin.modinfo,order} "$r/usr/$mdir/"
  for m in "$@"; do
    rel=$(awk -F: -v m="/$m.ko" 'index($1, m) && substr($1, length($1) - length(m) + 1) == m {print $1; exit}' "$sys/$mdir/modules.dep")
    [[ -n $rel ]] || die "kernel module $m not found in $KPKG"
    for dep in "$rel" $(awk -F': ' -v k="$rel" '$1 == k {print $2}' "$sys/$mdir/modules.dep"); do
      mkdir -p "$r/usr/$mdir/$(dirname "$dep")"
      cp "$sys/$mdir/$dep" "$r/usr/$mdir/$dep"
    done
  done
  depmod -b "$r/usr" "$KVER"
}

make_cpio() {
  local r=$1 out=$2
  # Uncompressed: under TCG the kernel unpacks it far faster than a compressed one.
  (cd "$r" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$out.tmp"
  mv "$out.tmp" "$out"
}

build_dom0_root() {
  local r=$1 sys=$2 b
  make_skeleton "$r"
  install_busybox "$r" "$sys"
  local xb=$sys/usr/lib/xen-4.17/bin
  for b in xl xenstored xenconsoled xen-init-dom0 libxl-save-helper xenconsole; do
    copy_elf "$r" "$sys" "$xb/$b"
  done
  # The xenstore-utils multi-call binary and its names.
  copy_elf "$r" "$sys" "$sys/usr/bin/xenstore"
  for b in "$sys"/usr/bin/xenstore-*; do ln -sfn xenstore "$r/usr/bin/$(basename "$b")"; done
  # Real tools for the stock hotplug scripts (bash, util-linux, coreutils) and for modules.
  # coreutils truncate: busybox's refuses relative sizes (`truncate -s +8M`, resize scenarios).
  for b in /usr/bin/bash /usr/bin/flock /usr/sbin/losetup /usr/bin/stat /usr/bin/expr \
    /usr/bin/readlink /usr/bin/kmod /usr/sbin/blockdev /usr/bin/truncate; do
    copy_elf "$r" "$sys" "$b"
  done
  for b in modprobe insmod rmmod lsmod depmod modinfo; do
    rm -f "$r/usr/sbin/$b" "$r/usr/bin/$b"
    ln -s ../bin/kmod "$r/usr/sbin/$b"
  done
  # glibc dlopens libgcc_s for thread cancellation/exit; ldd does not list it.
  copy_path "$r" "$sys" /usr/lib/x86_64-linux-gnu/libgcc_s.so.1
  # QEMU's qdisk (the device model libxl starts for backendtype=qdisk) and the keymaps it
  # refuses to start without.
  copy_elf "$r" "$sys" /usr/libexec/xen-qemu-system-i386
  mkdir -p "$r/usr/share/qemu"
  cp -r /usr/share/qemu/keymaps "$r/usr/share/qemu/"
  # Toolstack configuration and the stock hotplug scripts.
  mkdir -p "$r/etc/xen" "$r/var/lib/xen/images" "$r/var/log/xen/console" "$r/usr/local/sbin"
  cp -r "$sys/etc/xen/scripts" "$r/etc/xen/"
  cp "$sys/etc/xen/xl.conf" "$r/etc/xen/"
  copy_modules "$r" "$sys" xen-evtchn xen-gntdev xen-gntalloc xenfs xen-privcmd xen-blkback \
    loop 9pnet_virtio 9p virtio_pci
  cp "$sys/boot/config-$KVER" "$r/etc/kernel-config"
}

build_guest_root() {
  local r=$1 sys=$2 flavour=$3
  make_skeleton "$r"
  install_busybox "$r" "$sys"
  copy_modules "$r" "$sys" xen-blkfront
  if [[ $flavour == fio ]]; then
    copy_elf "$r" "$sys" /usr/bin/fio
    copy_path "$r" "$sys" /usr/lib/x86_64-linux-gnu/libgcc_s.so.1
    install -m 0644 "$LAB_DIR/guest/verify.fio" "$r/etc/verify.fio"
  fi
  install -m 0755 "$LAB_DIR/guest/init" "$r/init"
  # The kernel runs /sbin/poweroff and /sbin/reboot for `xl shutdown` / `xl reboot`; busybox's
  # versions signal an init that this image does not have, so go straight to the syscall
  # (which still runs the drivers' shutdown, hence blkfront's Closing handshake).
  rm -f "$r/usr/sbin/poweroff" "$r/usr/sbin/reboot" "$r/usr/bin/poweroff" "$r/usr/bin/reboot"
  printf '#!/bin/sh\necho "XBBG SHUTDOWN poweroff"\nsync\nexec busybox poweroff -f\n' >"$r/usr/sbin/poweroff"
  printf '#!/bin/sh\necho "XBBG SHUTDOWN reboot"\nsync\nexec busybox reboot -f\n' >"$r/usr/sbin/reboot"
  chmod 0755 "$r/usr/sbin/poweroff" "$r/usr/sbin/reboot"
}

# The guests boot the ELF inside the bzImage: libxenguest's bzImage loader spends ~9 s of
# TCG time un-xz-ing the kernel on every `xl create` (seen in xl -v logs), the ELF loader none.
# Boot protocol >= 2.08: the payload sits at (setup_sects + 1) * 512 + payload_offset.
extract_vmlinux() { # bzImage out
  local setup_sects off len magic
  setup_sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$1" | tr -d ' ')
  off=$(od -An -tu4 -j $((0x248)) -N4 "$1" | tr -d ' ')
  len=$(od -An -tu4 -j $((0x24c)) -N4 "$1" | tr -d ' ')
  off=$(((setup_sects + 1) * 512 + off))
  magic=$(od -An -tx1 -j "$off" -N6 "$1" | tr -d ' ')
  # Through a file, not a pipe: a reader that stops at the end of the compressed stream
  # would SIGPIPE the writer, and pipefail turns that into a failed build.
  dd if="$1" of="$2.payload" bs=1M iflag=skip_bytes,count_bytes skip="$off" count="$len" status=none
  case $magic in
  fd377a585a00) xz -dc --single-stream "$2.payload" >"$2" ;;
  1f8b*) gzip -dc "$2.payload" >"$2" 2>/dev/null || [[ $? == 2 ]] ;; # 2: trailing bytes ignored
  *) die "the guest kernel's payload is neither xz nor gzip (magic $magic): cannot extract its ELF" ;;
  esac
  rm -f "$2.payload"
  [[ $(od -An -c -j 1 -N3 "$2" | tr -d ' ') == ELF ]] || die "extracting the guest kernel's ELF from $1 failed"
}

# Sets ART (the cache directory of this key) and builds whatever is missing in it.
build_artifacts() {
  ensure_apt_lists
  KPKG=$(kernel_pkg)
  [[ -n $KPKG ]] || die "cannot resolve linux-image-amd64 to a kernel package"
  load_candidates "${XEN_VER_PKGS[@]}" "${OTHER_DL_PKGS[@]}" "$KPKG"
  local key
  key=$(lab_inputs | sha256sum | cut -c1-16)
  ART=$WORK/cache/$key
  if [[ -f $ART/complete ]]; then
    log "artifacts cached in $ART"
    KVER=$(cat "$ART/kver")
    return 0
  fi
  local t0=$SECONDS
  log "building artifacts into $ART (first run on this machine or package versions changed)"
  fetch_debs
  rm -rf "$ART"
  mkdir -p "$ART"
  local sys=$ART/sysroot
  build_sysroot "$sys"
  echo "$KVER" >"$ART/kver"
  zcat "$sys/boot/xen-4.17-amd64.gz" >"$ART/xen.elf"
  cp "$sys/boot/vmlinuz-$KVER" "$ART/vmlinuz"
  extract_vmlinux "$ART/vmlinuz" "$ART/vmlinux"
  build_dom0_root "$ART/dom0root" "$sys"
  make_cpio "$ART/dom0root" "$ART/dom0-base.cpio"
  build_guest_root "$ART/guest-small" "$sys" small
  make_cpio "$ART/guest-small" "$ART/guest-small.cpio"
  build_guest_root "$ART/guest-fio" "$sys" fio
  make_cpio "$ART/guest-fio" "$ART/guest-fio.cpio"
  lab_inputs >"$ART/inputs.txt"
  # The unpacked trees are only intermediate; the cpio files are what boots.
  rm -rf "$sys" "$ART/dom0root" "$ART/guest-small" "$ART/guest-fio"
  touch "$ART/complete"
  log "artifacts built in $((SECONDS - t0)) s: $(du -sh "$ART" | cut -f1)"
  # Older keys are dead weight (each is ~150 MB).
  find "$WORK/cache" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
}
