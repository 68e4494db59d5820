#!/usr/bin/env bash
# A stand-in for the pipeline image's base, python:3.11-slim-trixie, where no container
# registry can be reached: Debian 13 (trixie) from the Debian archive this host already uses
# (debootstrap), plus CPython 3.11 where the official image has it (/usr/local), then
# `podman import`. kubeflow/Dockerfile builds on it unchanged (PYTHON_IMAGE build argument).
#
#   tools/stand_in_base.sh IMAGE_NAME [PYTHON_PREFIX]
#
# Why trixie: its glibc 2.41 takes the manylinux_2_39 wheels of ml-metadata and TFDV, as the
# real base does. Why a copied CPython: trixie's own python3 is 3.13, and requirements.lock
# pins the stack for 3.11. PYTHON_PREFIX (default: the prefix of the python3.11 on PATH) must
# be a CPython 3.11 built with a shared libpython, as pyenv and the official images build it;
# it is copied without its site-packages, tests and Tk, so the image gets the standard library
# and pip's bootstrap (ensurepip, for `python -m venv`) only.
set -euo pipefail

say() { echo "[stand-in base] $*" >&2; }
die() { echo "[stand-in base] ERROR: $*" >&2; exit 1; }

image="${1:?usage: tools/stand_in_base.sh IMAGE_NAME [PYTHON_PREFIX]}"
prefix="${2:-}"
if [ -z "$prefix" ]; then
  py="$(command -v python3.11 || true)"
  [ -n "$py" ] || die "no python3.11 on PATH: pass the prefix of a CPython 3.11 (e.g. ~/.pyenv/versions/3.11.7)"
  prefix="$("$py" -c 'import sys; print(sys.base_prefix)')"
fi
[ -x "$prefix/bin/python3.11" ] || die "$prefix/bin/python3.11 does not exist"
ls "$prefix"/lib/libpython3.11.so* >/dev/null 2>&1 \
  || die "$prefix has no shared libpython3.11 (build CPython with --enable-shared)"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install debootstrap)"

mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
fi
mirror="${mirror:-http://deb.debian.org/debian}"

# The shared libraries CPython's extension modules link against (trixie's package names).
libs=ca-certificates,libbz2-1.0,libcrypt1,libexpat1,libffi8,liblzma5,libncursesw6,libtinfo6,libreadline8t64
libs=$libs,libsqlite3-0,libssl3t64,libuuid1,zlib1g,libgdbm6t64,netbase,tzdata

work="$(mktemp -d "${TMPDIR:-/tmp}/stand-in-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"
say "debootstrap trixie (minbase) from $mirror"
debootstrap --variant=minbase --include="$libs" trixie "$root" "$mirror" > "$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }

say "CPython 3.11 from $prefix into /usr/local"
mkdir -p "$root/usr/local/bin" "$root/usr/local/lib" "$root/usr/local/include"
cp -a "$prefix"/lib/libpython3.11.so* "$root/usr/local/lib/"
cp -a "$prefix/include/python3.11" "$root/usr/local/include/"
tar -C "$prefix/lib" \
  --exclude='python3.11/site-packages/*' --exclude='python3.11/test' --exclude='python3.11/idlelib' \
  --exclude='python3.11/tkinter' --exclude='python3.11/turtledemo' --exclude='*/_tkinter*' \
  --exclude='__pycache__' -cf - python3.11 | tar -C "$root/usr/local/lib" -xf -
cp -a "$prefix/bin/python3.11" "$root/usr/local/bin/"
for name in python3 python; do ln -sf python3.11 "$root/usr/local/bin/$name"; done
echo /usr/local/lib > "$root/etc/ld.so.conf.d/usr-local-python.conf"
chroot "$root" /sbin/ldconfig
chroot "$root" /usr/local/bin/python3.11 -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, venv, ensurepip' \
  || die "the copied CPython does not start in the trixie root (a shared library missing?)"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

say "podman import -> $image"
tar -C "$root" -c . | podman import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$image" >/dev/null
say "$image: $(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"
