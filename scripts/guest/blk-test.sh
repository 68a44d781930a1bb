#!/bin/sh
# Guest side of the block test (busybox sh). Writes deterministic patterns of several sizes at
# several offsets of /dev/vda, with O_DIRECT and buffered I/O, syncs, reads them back from the
# device and compares checksums. The host regenerates the same patterns (BlockPatterns.cs) and
# checks the image file byte for byte.
#   SV_SEED  pattern seed shared with the host
#   SV_MODE  write (write, then verify) or verify (second boot: only verify)
# Prints one "SV-CASE <case> <offset> <length> <mode> <sha256> OK|BAD" line per case.
SEED="${SV_SEED:-1}"
MODE="${SV_MODE:-write}"
DEV=/dev/vda
NCPU=$(nproc)

# Runs a command pinned to a CPU chosen by case number: with one block queue per vCPU,
# this spreads the I/O over every queue.
oncpu() { # case command...
  cpu=$(($1 % NCPU)); shift
  taskset -c "$cpu" "$@"
}

# Case table: index offset length io-mode. Direct cases are sector aligned; buffered ones
# include an unaligned offset and length. Keep in step with BlockPatterns.Cases on the host.
CASES="0 0 4096 direct
1 67072 512 direct
2 1048576 65536 direct
3 2097152 1048576 direct
4 4198400 12288 buffered
5 6291556 3000 buffered
6 8389120 307200 buffered
7 33546240 8192 direct"

# Pattern: whole 512-byte lines "sv SSSSSSSS CCCC KKKKKKKK <485 filler chars>\n" per sector k,
# the filler a window (moving with k) of a 1024-char string drawn from a MINSTD generator
# seeded by seed and case; cut to the case's length. Same in BlockPatterns.cs.
gen() { # case length
  awk -v S="$SEED" -v C="$1" -v L="$2" 'BEGIN {
    A = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"
    st = (S * 1000 + C) % 2147483646 + 1
    R = ""
    for (i = 0; i < 1024; i++) { st = (st * 48271) % 2147483647; R = R substr(A, st % 64 + 1, 1) }
    n = int((L + 511) / 512)
    for (k = 0; k < n; k++) {
      off = (k * 131 + C * 7) % 512
      printf "sv %08d %04d %08d %s\n", S, C, k, substr(R, off + 1, 485)
    }
  }' | head -c "$2"
}

echo "SV-SIZE $(cat /sys/block/vda/size)"
echo "SV-QUEUES $(ls /sys/block/vda/mq | wc -l)"
echo "SV-FEATURES $(cat /sys/block/vda/device/features)"
# The disk's PCI function behind a (virtual) IOMMU: "SV-IOMMU <group> <domain type>" (DMA =
# translated with strict invalidation, DMA-FQ = lazy, identity = pass-through), "SV-IOMMU none" without one.
if [ -e /sys/block/vda/device/../iommu_group ]; then
  echo "SV-IOMMU $(basename "$(readlink /sys/block/vda/device/../iommu_group)") $(cat /sys/block/vda/device/../iommu_group/type)"
else
  echo "SV-IOMMU none"
fi

echo "$CASES" | while read c off len mode; do
  gen "$c" "$len" > "/tmp/pat$c"
  sha=$(sha256sum < "/tmp/pat$c" | cut -d' ' -f1)
  echo "$sha" > "/tmp/sha$c"
  [ "$MODE" = write ] || continue
  if [ "$mode" = direct ]; then
    if [ "$c" = 3 ]; then bs=65536; else bs="$len"; fi   # case 3: many requests
    oncpu "$c" dd if="/tmp/pat$c" of="$DEV" bs="$bs" seek="$off" oflag=seek_bytes,direct conv=notrunc 2>/tmp/dd.err \
      || { echo "SV-ERROR write case $c: $(cat /tmp/dd.err)"; }
  else
    oncpu "$c" dd if="/tmp/pat$c" of="$DEV" bs="$len" seek="$off" oflag=seek_bytes conv=notrunc 2>/tmp/dd.err \
      || { echo "SV-ERROR write case $c: $(cat /tmp/dd.err)"; }
  fi
done
sync
# Forget the page cache so the buffered reads below come from the device, not from memory.
echo 3 > /proc/sys/vm/drop_caches

bad=0
while read c off len mode; do
  want=$(cat "/tmp/sha$c")
  got=$(oncpu "$c" dd if="$DEV" bs=65536 skip="$off" count="$len" iflag=skip_bytes,count_bytes 2>/dev/null | sha256sum | cut -d' ' -f1)
  result=OK
  [ "$got" = "$want" ] || { result=BAD; echo "SV-ERROR case $c buffered read $got"; }
  if [ "$mode" = direct ]; then
    got=$(oncpu "$c" dd if="$DEV" bs="$len" skip="$off" count=1 iflag=skip_bytes,direct 2>/dev/null | sha256sum | cut -d' ' -f1)
    [ "$got" = "$want" ] || { result=BAD; echo "SV-ERROR case $c direct read $got"; }
  fi
  [ "$result" = OK ] || bad=1
  echo "SV-CASE $c $off $len $mode $want $result"
done <<CASEEOF
$CASES
CASEEOF

# Completion interrupts per request queue ("virtio0-req.N" with MSI-X): proof that the
# backend answered on every queue. Prints "SV-IRQ <queue> <count>".
awk '/virtio[0-9]+-req\.[0-9]+/ {
  n = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) n += $i
  q = $NF; sub(/.*req\./, "", q); print "SV-IRQ " q " " n
}' /proc/interrupts
exit $bad
