#!/bin/sh
# Guest side of the two-guest net test (busybox sh). Both guests take an address on eth0 and
# ping each other; then the client sends a random file to the server with nc and both print
# its checksum, which the host compares.
#   SV_IP, SV_PEER   this guest's and the other guest's IPv4 address (a /24)
#   SV_ROLE          server (receives) or client (sends)
#   SV_KIB           size of the file in KiB (client)
IP="$SV_IP"; PEER="$SV_PEER"; ROLE="$SV_ROLE"; KIB="${SV_KIB:-256}"
PORT=5000

ip link set eth0 up || { echo "SV-ERROR no eth0"; exit 1; }
ip addr add "$IP/24" dev eth0
echo "SV-MAC $(cat /sys/class/net/eth0/address)"

if [ "$ROLE" = server ]; then
  # busybox nc -l quits when its own stdin ends: give it a FIFO that a sleeping writer keeps
  # open (a "sleep | nc" pipeline would not end until the sleep does). nc then ends when the
  # client closes the connection.
  mkfifo /tmp/nc.stdin
  sleep 600 > /tmp/nc.stdin &
  ( nc -l -p "$PORT" < /tmp/nc.stdin > /tmp/received; echo "$?" > /tmp/received.done ) &
fi

# The other guest may still be booting: retry the first ping for a while.
tries=0
until ping -c 1 -W 1 "$PEER" > /dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -lt 90 ] || { echo "SV-ERROR peer $PEER never answered ping"; exit 1; }
done
received=$(ping -c 3 -W 2 "$PEER" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
echo "SV-PING $received"

if [ "$ROLE" = server ]; then
  waited=0
  until [ -f /tmp/received.done ]; do
    sleep 1; waited=$((waited + 1))
    [ "$waited" -lt 120 ] || { echo "SV-ERROR no file received"; exit 1; }
  done
  echo "SV-RECEIVED $(sha256sum < /tmp/received | cut -d' ' -f1) $(wc -c < /tmp/received)"
else
  dd if=/dev/urandom of=/tmp/sent bs=1024 count="$KIB" 2>/dev/null
  echo "SV-SENT $(sha256sum < /tmp/sent | cut -d' ' -f1) $(wc -c < /tmp/sent)"
  # The server's listener may not be up yet: retry the connection.
  tries=0
  until nc "$PEER" "$PORT" < /tmp/sent; do
    tries=$((tries + 1))
    [ "$tries" -lt 30 ] || { echo "SV-ERROR cannot connect to $PEER:$PORT"; exit 1; }
    sleep 1
  done
fi
exit 0
