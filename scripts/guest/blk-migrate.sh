#!/bin/sh
# Guest side of the live-migration test (busybox sh). The host migrates this guest from QEMU to
# QEMU (each with its own vhost-user-blk backend on the same image) while this script keeps the
# device writing into guest memory:
#
# The disk holds SV_CHUNKS data chunks of SV_CHUNK_KIB KiB, then a control area at chunk index
# SV_CHUNKS: its first 4 KiB block is "SVCTL <migrations> <done>" (the host updates it after each
# migration), the blocks after it the md5 of every chunk, one per line (the manifest).
#
# Passes: drop the page cache, then read every chunk buffered, so the device DMAs each chunk into
# fresh page-cache pages (guest RAM the migration must carry, and which only the backend's dirty
# log tells QEMU about), and check its md5. Between chunks, the control block is read with
# O_DIRECT; when the migration count changed, the guest now runs on a new QEMU: it re-checks the
# chunks of this pass from the page cache (no device I/O: the very pages the source's device wrote,
# as they arrived here) and prints "SV-CHECK <migrations> <chunks> <bad>". When the host says done,
# it prints "SV-SUMMARY <passes> <chunk reads> <checks> <bad>" and exits non-zero if anything differed.
N="${SV_CHUNKS:?}"
KIB="${SV_CHUNK_KIB:?}"
DEV=/dev/vda
CTL=$((N * KIB / 4))   # 4 KiB block index of the control block

ctl() { dd if=$DEV bs=4096 skip=$CTL count=1 iflag=direct 2>/dev/null | head -n 1; }
sum() { dd if=$DEV bs=${KIB}k skip="$1" count=1 2>/dev/null | md5sum | cut -c1-32; }

# The manifest, read before any migration (the host passes its md5 so a bad read cannot slip by).
blocks=$(( (N * 33 + 4095) / 4096 ))
dd if=$DEV bs=4096 skip=$((CTL + 1)) count=$blocks iflag=direct 2>/dev/null | head -n "$N" > /tmp/manifest
got=$(md5sum < /tmp/manifest | cut -c1-32)
if [ "$got" != "$SV_MANIFEST" ]; then
  echo "SV-ERROR manifest md5 $got, expected $SV_MANIFEST"
  exit 2
fi
i=0
while read -r want; do eval "want_$i=$want"; i=$((i + 1)); done < /tmp/manifest
[ "$i" -eq "$N" ] || { echo "SV-ERROR manifest has $i lines, expected $N"; exit 2; }
echo "SV-READY"

seen=0; done_flag=0; pass=0; reads=0; checks=0; bad=0
while [ "$done_flag" -eq 0 ]; do
  pass=$((pass + 1))
  sync; echo 3 > /proc/sys/vm/drop_caches
  i=0
  while [ "$i" -lt "$N" ]; do
    got=$(sum "$i")
    eval "want=\$want_$i"
    reads=$((reads + 1))
    if [ "$got" != "$want" ]; then echo "SV-BAD read pass $pass chunk $i"; bad=$((bad + 1)); fi
    i=$((i + 1))
    set -- $(ctl)
    if [ "$1" = SVCTL ] && [ "$2" != "$seen" ]; then
      # A new QEMU runs us now: the chunks of this pass are still in the page cache; re-check them.
      seen=$2; checks=$((checks + 1)); cbad=0; j=0
      while [ "$j" -lt "$i" ]; do
        eval "want=\$want_$j"
        [ "$(sum "$j")" = "$want" ] || { echo "SV-BAD check after migration $seen chunk $j"; cbad=$((cbad + 1)); }
        j=$((j + 1))
      done
      bad=$((bad + cbad))
      echo "SV-CHECK $seen $i $cbad"
      if [ "$3" = 1 ]; then done_flag=1; break; fi
    fi
  done
  echo "SV-PASS $pass $i"
done
echo "SV-SUMMARY $pass $reads $checks $bad"
[ "$bad" -eq 0 ]
