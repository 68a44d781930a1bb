#!/bin/sh
# Guest side of the live-migration test (busybox sh). The host migrates this guest from QEMU to
# QEMU (each with its own vhost-user-blk backend on the same image) while this script keeps the
# device writing into guest memory:
#
# The disk holds SV_CHUNKS data chunks of SV_CHUNK_KIB KiB, then a control area at chunk index
# SV_CHUNKS: its first 4 KiB block is "SVCTL <migrations> <done>" (the host updates it after each
# migration), the blocks after it the md5 of every chunk, one per line (the manifest).
#
# Passes: drop the page cache, then read every chunk buffered (starting at another chunk each pass),
# so the device DMAs each chunk into fresh page-cache pages (guest RAM the migration must carry, and
# which only the backend's dirty log tells QEMU about), and check its md5. Between chunks, the control
# block is read with O_DIRECT; when the migration count changed, the guest now runs on a new QEMU: it
# re-checks the chunks of this pass from the page cache (no device I/O: the very pages the source's
# device wrote, as they arrived here) and prints "SV-CHECK <migrations> <chunks> <bad> <sectors read>".
# When the host says done, it prints "SV-SUMMARY <passes> <chunk reads> <checks> <bad>" and exits
# non-zero if anything differed.
N="${SV_CHUNKS:?}"
KIB="${SV_CHUNK_KIB:?}"
DEV=/dev/vda
CTL=$((N * KIB / 4))   # 4 KiB block index of the control block

# Keep the disk open all along: Linux drops a block device's page cache when its last opener closes
# it, and every dd below opens and closes it. Without this, nothing the device wrote stays in RAM.
exec 3< $DEV

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
# Ballast: SV_HOLD_COPIES copies of the data region in tmpfs, read with O_DIRECT so no page cache is
# involved. Allocated first, it takes the top of free memory, so the page cache of the passes below
# comes from lower addresses: QEMU's first pass over RAM then sends those pages early and spends the
# rest of the pass on the ballast while the device keeps writing into pages already sent.
k=0
while [ "$k" -lt "${SV_HOLD_COPIES:-0}" ]; do
  dd if=$DEV bs=${KIB}k count="$N" iflag=direct 2>/dev/null >> /tmp/ballast
  k=$((k + 1))
done
echo "SV-READY"

seen=0; done_flag=0; pass=0; reads=0; checks=0; bad=0
while [ "$done_flag" -eq 0 ]; do
  pass=$((pass + 1))
  # Each pass starts at another chunk: freed page-cache pages come back in about the order they
  # went, so in a fixed order a page would get the same chunk again, and a stale copy of it (a
  # device write the log missed) would look right.
  start=$(( (pass * 23) % N ))
  sync; echo 3 > /proc/sys/vm/drop_caches
  n=0
  while [ "$n" -lt "$N" ]; do
    c=$(( (start + n) % N ))
    got=$(sum "$c")
    eval "want=\$want_$c"
    reads=$((reads + 1))
    if [ "$got" != "$want" ]; then echo "SV-BAD read pass $pass chunk $c"; bad=$((bad + 1)); fi
    n=$((n + 1))
    set -- $(ctl)
    if [ "$1" = SVCTL ] && [ "$2" != "$seen" ]; then
      # A new QEMU runs us now: the chunks of this pass are still in the page cache; re-check them.
      seen=$2; fin=$3; checks=$((checks + 1)); cbad=0; m=0
      set -- $(cat /sys/block/vda/stat); before=$3
      while [ "$m" -lt "$n" ]; do
        c=$(( (start + m) % N ))
        eval "want=\$want_$c"
        [ "$(sum "$c")" = "$want" ] || { echo "SV-BAD check after migration $seen chunk $c"; cbad=$((cbad + 1)); }
        m=$((m + 1))
      done
      bad=$((bad + cbad))
      set -- $(cat /sys/block/vda/stat)
      echo "SV-CHECK $seen $n $cbad $(( $3 - before ))"
      if [ "$fin" = 1 ]; then done_flag=1; break; fi
    fi
  done
  echo "SV-PASS $pass $n"
done
echo "SV-SUMMARY $pass $reads $checks $bad"
[ "$bad" -eq 0 ]
