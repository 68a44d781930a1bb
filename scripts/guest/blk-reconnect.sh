#!/bin/sh
# Guest side of the reconnect test (busybox sh). Writes SV_BLOCKS 4 KiB blocks with O_DIRECT, one
# request each, while the host kills and restarts the backend; prints "SV-DONE <block>" as soon as
# the guest has seen a write complete. Then reads every block back and checks it.
# Block i holds the line "sharpvhost reconnect block <i, 8 digits>\n" repeated, cut to 4096 bytes
# (the host builds the same bytes).
N="${SV_BLOCKS:-300}"
DEV=/dev/vda

block() { yes "sharpvhost reconnect block $(printf %08d "$1")" | head -c 4096; }

i=0
while [ "$i" -lt "$N" ]; do
  block "$i" > /tmp/b
  if dd if=/tmp/b of="$DEV" bs=4096 seek="$i" count=1 oflag=direct conv=notrunc 2>/tmp/err; then
    echo "SV-DONE $i"
  else
    echo "SV-ERROR write $i: $(cat /tmp/err)"
  fi
  i=$((i + 1))
done

bad=0
i=0
while [ "$i" -lt "$N" ]; do
  want=$(block "$i" | md5sum | cut -d' ' -f1)
  got=$(dd if="$DEV" bs=4096 skip="$i" count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
  [ "$want" = "$got" ] || { echo "SV-BAD $i"; bad=$((bad + 1)); }
  i=$((i + 1))
done
echo "SV-VERIFIED $N $bad"
[ "$bad" -eq 0 ]
