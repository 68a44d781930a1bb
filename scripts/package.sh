#!/usr/bin/env bash
# Builds what SharpVhost ships, once, into .build/ (each step is skipped while its output is newer than
# every source file, so tests and the bench may call this freely):
#   .build/aot/sharpvhost           the backend (blk, net) as a NativeAOT binary (IL/trim/AOT warnings are errors)
#   .build/nupkg/*.nupkg            the libraries (SharpVhost.Devices and the layers under it) and the
#                                   `sharpvhost` dotnet tool
#   .build/deb/sharpvhost_V_amd64.deb  the native binary, QEMU's JSON descriptors, the systemd units and
#                                   the man page, built with dpkg-deb
# Usage: scripts/package.sh [aot|nupkg|deb|all]   (default all; deb implies aot)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
what="${1:-all}"
version="$(sed -n 's|.*<Version>\(.*\)</Version>.*|\1|p' Directory.Build.props | head -1)"
build="$root/.build"
mkdir -p "$build"

# Newer than $1 (a stamp): any source, project or props file the products are built from.
stale() {
  [[ ! -e "$1" ]] && return 0
  [[ -n "$(find src docs/package-readme.md docs/sharpvhost.1 packaging LICENSE Directory.Build.props Directory.Packages.props \
           -newer "$1" -type f -not -path '*/bin/*' -not -path '*/obj/*' -print -quit 2>/dev/null)" ]]
}

aot() {
  local out="$build/aot"
  stale "$out/.stamp" || return 0
  command -v clang >/dev/null || bash scripts/install-deps.sh
  echo "package: NativeAOT publish of src/SharpVhost.Cli -> $out" >&2
  rm -rf "$out"
  # Backend only (blk, net): demo and mmcheck stay in the JIT CLI. Its obj/bin are under .build/backend-only.
  dotnet publish src/SharpVhost.Cli/SharpVhost.Cli.csproj -c Release -r linux-x64 -p:PublishAot=true -p:SharpVhostBackendOnly=true \
    -p:TreatWarningsAsErrors=true -p:IlcTreatWarningsAsErrors=true -p:TrimmerSingleWarn=false \
    -o "$out" -nologo -v q -clp:ErrorsOnly >&2
  rm -f "$out"/*.pdb
  touch "$out/.stamp"
}

nupkg() {
  local out="$build/nupkg"
  stale "$out/.stamp" || return 0
  echo "package: dotnet pack (libraries and the dotnet tool) -> $out" >&2
  rm -rf "$out"
  # dotnet pack packs one project, not its references: each library, bottom layer first, then the tool.
  for p in Interop Memory Virtio VhostUser Devices Cli; do
    p="src/SharpVhost.$p/SharpVhost.$p.csproj"
    dotnet pack "$p" -c Release -o "$out" --no-dependencies -nologo -v q -clp:ErrorsOnly >&2
  done
  touch "$out/.stamp"
}

deb() {
  aot
  local out="$build/deb" deb="$build/deb/sharpvhost_${version}_amd64.deb"
  [[ -e "$deb" && "$deb" -nt "$build/aot/.stamp" ]] && ! stale "$deb" && return 0
  echo "package: dpkg-deb -> $deb" >&2
  local tree="$build/deb-root"
  rm -rf "$tree" "$out"; mkdir -p "$tree/DEBIAN" "$tree/usr/bin" "$tree/usr/share/man/man1" "$tree/usr/share/doc/sharpvhost" "$out"
  install -m 0755 "$build/aot/sharpvhost" "$tree/usr/bin/sharpvhost"
  # QEMU's backend program names: one binary dispatching on its name. The descriptors and the units
  # name /usr/libexec/sharpvhost-{blk,net}; /usr/bin has the same names for people.
  mkdir -p "$tree/usr/libexec"
  for kind in blk net; do
    ln -s sharpvhost "$tree/usr/bin/sharpvhost-$kind"
    ln -s ../bin/sharpvhost "$tree/usr/libexec/sharpvhost-$kind"
  done
  # Descriptors QEMU and libvirt discover, and the systemd units, when the repository has them.
  if compgen -G "packaging/qemu/*.json" >/dev/null; then
    mkdir -p "$tree/usr/share/qemu/vhost-user"
    install -m 0644 packaging/qemu/*.json "$tree/usr/share/qemu/vhost-user/"
  fi
  if compgen -G "packaging/systemd/*" >/dev/null; then
    mkdir -p "$tree/lib/systemd/system"
    install -m 0644 packaging/systemd/* "$tree/lib/systemd/system/"
  fi
  gzip -9n < docs/sharpvhost.1 > "$tree/usr/share/man/man1/sharpvhost.1.gz"
  { echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: sharpvhost"; echo; echo "Files: *"; echo "License: MIT"; echo; sed 's/^$/./; s/^/ /' LICENSE; } \
    > "$tree/usr/share/doc/sharpvhost/copyright"
  local size; size="$(du -sk "$tree" | cut -f1)"
  sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" packaging/debian/control > "$tree/DEBIAN/control"
  find "$tree" -exec touch -h -d @0 {} +   # reproducible timestamps
  SOURCE_DATE_EPOCH=0 dpkg-deb --root-owner-group -Zxz --build "$tree" "$deb" >&2
}

case "$what" in
  aot) aot ;;
  nupkg) nupkg ;;
  deb) deb ;;
  all) aot; nupkg; deb ;;
  *) echo "usage: $0 [aot|nupkg|deb|all]" >&2; exit 2 ;;
esac
