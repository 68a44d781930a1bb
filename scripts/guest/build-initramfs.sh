#!/usr/bin/env bash
# Builds a gzip'd newc initramfs for a test guest: busybox-static, the virtio modules of the
# installed Debian kernel, an /init that loads them and runs one test script, and that script.
#
#   build-initramfs.sh OUT.gz TEST_SCRIPT [KERNEL_RELEASE]
#
# The /init prints SHARPVHOST-GUEST-BEGIN before the script and SHARPVHOST-GUEST-EXIT=<status>
# after it, then powers off; the host harness parses these markers from the serial console.
# Words of the kernel command line that start with SV_ become environment variables of the
# script, so one cached image serves guests that differ only in parameters (address, role).
set -euo pipefail
out="$1"
script="$2"
release="${3:-}"
if [[ -z "$release" ]]; then
  # The newest kernel under /boot; the harness passes the release of the vmlinuz it boots.
  release="$(ls /boot/vmlinuz-* | sort -V | tail -n1 | sed 's|^/boot/vmlinuz-||')"
fi
moddir="/lib/modules/$release"
[[ -d "$moddir" ]] || { echo "build-initramfs: no modules for kernel $release in $moddir" >&2; exit 1; }
busybox=/bin/busybox
[[ -x "$busybox" ]] || { echo "build-initramfs: $busybox missing (install busybox-static)" >&2; exit 1; }

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,proc,sys,dev,tmp,modules,usr/bin,usr/sbin}
cp "$busybox" "$stage/bin/busybox"
# Applet links, so scripts can call dd, md5sum, nc, ... by name.
for applet in $("$busybox" --list); do
  [[ "$applet" == busybox ]] && continue
  ln -sf busybox "$stage/bin/$applet"
done

# Dependency order of Debian 6.1's virtio stack: core, PCI transport, then the device drivers.
modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk failover net_failover virtio_net)
for m in "${modules[@]}"; do
  path="$(find "$moddir" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" \) -print -quit)"
  if [[ -z "$path" ]]; then
    # Built into the kernel (no module file) is fine: nothing to load then.
    if grep -q "/$m.ko" "$moddir/modules.builtin" 2>/dev/null; then continue; fi
    echo "build-initramfs: module $m not found under $moddir" >&2; exit 1
  fi
  # busybox insmod cannot decompress: store every module as a plain .ko.
  case "$path" in
    *.ko.xz) xz -dc "$path" > "$stage/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$path" > "$stage/modules/$m.ko" ;;
    *.ko.gz) gzip -dc "$path" > "$stage/modules/$m.ko" ;;
    *) cp "$path" "$stage/modules/$m.ko" ;;
  esac
  echo "$m" >> "$stage/modules/order"
done

cp "$script" "$stage/test.sh"
chmod +x "$stage/test.sh"

cat > "$stage/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
for m in $(cat /modules/order); do
  insmod "/modules/$m.ko" || echo "SHARPVHOST-GUEST-WARN insmod $m failed"
done
for word in $(cat /proc/cmdline); do
  case "$word" in SV_*=*) export "$word" ;; esac
done
ip link set lo up 2>/dev/null
echo "SHARPVHOST-GUEST-BEGIN"
cd /tmp
sh /test.sh
status=$?
echo "SHARPVHOST-GUEST-EXIT=$status"
sync
poweroff -f
# poweroff returns only on failure; the kernel then panics on init's exit and QEMU
# (panic=-1, -no-reboot) quits anyway.
sleep 1
INIT
chmod +x "$stage/init"

tmp="$out.tmp.$$"
(cd "$stage" && find . -print0 | sort -z | cpio --null -o -H newc --quiet --owner=0:0) | gzip -1 > "$tmp"
mv -f "$tmp" "$out"
