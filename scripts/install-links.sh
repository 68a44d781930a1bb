#!/usr/bin/env bash
# Installs the names QEMU and libvirt run the backends by: DIR/sharpvhost-blk and DIR/sharpvhost-net,
# symlinks to the sharpvhost program (which picks its subcommand from that name), and with --descriptors
# the vhost-user JSON descriptors (packaging/qemu) into /etc/qemu/vhost-user with `binary` set to DIR.
#   scripts/install-links.sh [--descriptors] PROGRAM [DIR]     (DIR defaults to /usr/libexec)
set -euo pipefail
descriptors=0
if [[ ${1:-} == --descriptors ]]; then descriptors=1; shift; fi
program="$(realpath "${1:?usage: install-links.sh [--descriptors] PROGRAM [DIR]}")"
dir="${2:-/usr/libexec}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ -x $program ]] || { echo "install-links: $program is not an executable" >&2; exit 2; }
# The repository's ./sharpvhost is a script that builds and execs .build/cli/sharpvhost: a link to the
# script would lose the name it was run by, so link to the program it builds.
if [[ $(head -c 2 "$program") == '#!' ]]; then
  "$program" --help >/dev/null
  program="$(dirname "$program")/.build/cli/sharpvhost"
  [[ -x $program ]] || { echo "install-links: building the CLI did not give $program" >&2; exit 2; }
fi
mkdir -p "$dir"
for device in blk net; do
  ln -sfn "$program" "$dir/sharpvhost-$device"
  echo "$dir/sharpvhost-$device -> $program"
done
if ((descriptors)); then
  mkdir -p /etc/qemu/vhost-user
  for device in blk net; do
    sed "s|\"binary\": \"[^\"]*\"|\"binary\": \"$dir/sharpvhost-$device\"|" \
      "$root/packaging/qemu/50-sharpvhost-$device.json" > "/etc/qemu/vhost-user/50-sharpvhost-$device.json"
    echo "/etc/qemu/vhost-user/50-sharpvhost-$device.json"
  done
fi
