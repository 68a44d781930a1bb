#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use: QEMU with a Linux guest kernel,
# busybox for the guest's initramfs, Spin for mmcheck's cross-check, DPDK for the net peers, AFL++
# for the bounded fuzz runs, fio for the storage benchmark's limit, clang and zlib1g-dev for the
# NativeAOT publish, systemd's socket-activation and unit tools, nbdkit and qemu-nbd for the NBD client.
# Idempotent: installs only what is missing, and runs `apt-get update` at most once.
set -euo pipefail
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-storage-daemon >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
ls /boot/vmlinuz-* >/dev/null 2>&1 || need+=(linux-image-amd64)
[[ -x /bin/busybox ]] || need+=(busybox-static)
command -v spin >/dev/null || need+=(spin)
command -v cpio >/dev/null || need+=(cpio)
command -v gcc >/dev/null || need+=(gcc)
# Guest initramfs (scripts/guest/build-initramfs.sh): compressed kernel modules, if any.
command -v gzip >/dev/null || need+=(gzip)
command -v xz >/dev/null || need+=(xz-utils)
command -v zstd >/dev/null || need+=(zstd)
# Net peer for the two-guest tests: testpmd with net_vhost ports.
command -v dpdk-testpmd >/dev/null || need+=(dpdk dpdk-dev)
# NBD servers for the NBD client storage's tests and benchmark (qemu-nbd comes with qemu-utils).
command -v qemu-nbd >/dev/null || need+=(qemu-utils)
command -v nbdkit >/dev/null || need+=(nbdkit)
# The system-call checks (what the kernel sees of a claim: scatter-gather sends, TCP_NODELAY).
command -v strace >/dev/null || need+=(strace)
# The NativeAOT publish of the backend (scripts/package.sh): clang links it, zlib1g-dev for libz.
command -v clang >/dev/null || need+=(clang)
[[ -e /usr/include/zlib.h ]] || need+=(zlib1g-dev)
# The Debian package (scripts/package.sh deb) and its install test.
command -v dpkg-deb >/dev/null || need+=(dpkg)
# systemd's tools without systemd running: socket activation and unit checks (tests/.../Service, Packaging).
command -v systemd-socket-activate >/dev/null || need+=(systemd)
command -v systemd-analyze >/dev/null || need+=(systemd)
# The storage benchmark's limit: fio on the same image with the same engine and depth.
command -v fio >/dev/null || need+=(fio)
# Bounded fuzz runs (fuzz/run.sh, the integration tests' Fuzz folder).
command -v afl-fuzz >/dev/null || need+=(afl++)
if ((${#need[@]})); then
  echo "install-deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi
