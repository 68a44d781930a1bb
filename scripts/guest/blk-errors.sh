#!/bin/sh
# Guest side of the NBD error-injection test (busybox sh). The host's nbdkit fails every write
# (error filter) and serves reads: reads must succeed, writes must fail with an I/O error, and the
# disk must keep serving reads afterwards.
DEV=/dev/vda
report() { # tag command...
  tag=$1; shift
  if "$@" 2>/tmp/err; then echo "$tag ok"; else echo "$tag failed $(tr '\n' ' ' </tmp/err)"; fi
}
report SV-READ dd if="$DEV" of=/dev/null bs=4096 count=16 iflag=direct
report SV-WRITE dd if=/dev/zero of="$DEV" bs=4096 seek=8 count=1 oflag=direct conv=notrunc
report SV-READ-AFTER dd if="$DEV" of=/dev/null bs=4096 skip=4 count=16 iflag=direct
exit 0
