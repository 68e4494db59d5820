#!/usr/bin/env bash
# Creates .venv for this project, idempotently.
#
# Why this exists: the TFX 1.21 stack ships ml-metadata and tensorflow-data-validation
# only as manylinux_2_39 wheels. On hosts whose glibc is older than 2.39 (Debian 12 has
# 2.36) pip skips them and the install fails. There we unpack Debian 13's C runtime
# (libc6, libstdc++6, libgcc-s1) into a private folder and make .venv/bin/python a small
# wrapper that starts the real interpreter through that runtime's loader. pip then sees
# glibc 2.41 and installs the official wheels. On hosts with glibc >= 2.39 (the container
# image, newer distributions) nothing of this is done.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
RUNTIME="${RUNTIME_DIR:-$ROOT/.runtime}"
PYTHON_BIN="${PYTHON:-python3}"
MIN_GLIBC="2.39"

say() { printf '[install] %s\n' "$*" >&2; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

glibc_version() { getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}'; }
version_lt() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -1)" = "$1" ] && [ "$1" != "$2" ]; }

real_python() {
  # The interpreter the venv is built on, resolved to a real file (not a shim).
  "$PYTHON_BIN" -c 'import os, sys; print(os.path.realpath(sys.executable))'
}

debian_mirror() {
  # Reuse the host's own Debian mirror so no host name is hard-coded here.
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
  fi
  printf '%s' "$uri"
}

provision_runtime() {
  local lib="$RUNTIME/root/usr/lib/x86_64-linux-gnu"
  if [ -x "$lib/ld-linux-x86-64.so.2" ] && [ -f "$lib/libstdc++.so.6" ]; then
    printf '%s' "$lib"; return
  fi
  command -v apt-get >/dev/null || die "glibc $(glibc_version) < $MIN_GLIBC and no apt-get to fetch Debian 13's runtime.
  Use the container image (kubeflow/Dockerfile), or a host with glibc >= $MIN_GLIBC."
  local mirror; mirror=$(debian_mirror)
  [ -n "$mirror" ] || die "could not find this host's Debian mirror in /etc/apt; cannot fetch Debian 13's C runtime.
  Use the container image (kubeflow/Dockerfile), or a host with glibc >= $MIN_GLIBC."
  say "glibc $(glibc_version) < $MIN_GLIBC: fetching Debian 13 (trixie) libc6, libstdc++6, libgcc-s1 into $RUNTIME"
  local work="$RUNTIME/apt"
  rm -rf "$work"; mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/debs"
  echo "deb $mirror trixie main" > "$work/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives"
              -o "APT::Architecture=amd64" -o "Debug::NoLocking=1")
  if ! apt-get "${opts[@]}" -qq update >&2; then
    die "could not read the trixie package lists from $mirror.
  Use the container image (kubeflow/Dockerfile), or a host with glibc >= $MIN_GLIBC."
  fi
  (cd "$work/debs" && chmod 777 . && apt-get "${opts[@]}" -qq download libc6 libstdc++6 libgcc-s1 >&2) \
    || die "could not download libc6/libstdc++6/libgcc-s1 from trixie. Use the container image (kubeflow/Dockerfile)."
  mkdir -p "$RUNTIME/root"
  for deb in "$work/debs"/*.deb; do dpkg -x "$deb" "$RUNTIME/root"; done
  [ -x "$lib/ld-linux-x86-64.so.2" ] || die "unpacked runtime has no loader at $lib"
  rm -rf "$work/lists" "$work/archives"
  printf '%s' "$lib"
}

write_wrapper() {
  local lib="$1" real="$2" wrapper="$VENV/bin/python"
  rm -f "$VENV/bin/python" "$VENV/bin/python3" "$VENV/bin/python3".*
  cat > "$wrapper" <<WRAP
#!/bin/sh
# movielens-tfx runtime wrapper: runs the venv's Python under Debian 13's C runtime
# (see tools/provision_venv.sh).
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" --argv0 "$VENV/bin/python" "$real" "\$@"
WRAP
  chmod +x "$wrapper"
  ln -s python "$VENV/bin/python3"
}

main() {
  local real; real=$(real_python)
  local glibc; glibc=$(glibc_version)
  if [ ! -f "$VENV/pyvenv.cfg" ]; then
    say "creating $VENV with $real"
    "$real" -m venv "$VENV"
  fi
  if version_lt "$glibc" "$MIN_GLIBC"; then
    local lib; lib=$(provision_runtime)
    if [ -L "$VENV/bin/python" ] || ! grep -qs "movielens-tfx runtime wrapper" "$VENV/bin/python"; then
      write_wrapper "$lib" "$real"
    fi
  else
    say "glibc $glibc >= $MIN_GLIBC: no private runtime needed"
  fi
  "$VENV/bin/python" -c 'import os; print("[install] venv python sees glibc", os.confstr("CS_GNU_LIBC_VERSION"))' >&2
}
main "$@"
