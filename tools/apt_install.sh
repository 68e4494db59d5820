#!/usr/bin/env bash
# Installs Debian packages with apt-get, as root or through passwordless sudo: the one place the
# set-up scripts (tools/provision_browser.sh, tools/provision_podman.sh) reach for the system's
# package manager.
#
#   tools/apt_install.sh [--no-install-recommends] PACKAGE...
#
# Exits 0 once the packages are installed. Exits 3, having installed nothing, where it cannot
# (no apt-get here; not root and no passwordless sudo), printing why on stderr, so that the
# caller decides whether that is a warning (the browser test) or an error (kubeflow-local).
set -euo pipefail

opts=()
if [ "${1:-}" = --no-install-recommends ]; then
  opts+=("$1"); shift
fi
[ $# -gt 0 ] || { echo "usage: tools/apt_install.sh [--no-install-recommends] PACKAGE..." >&2; exit 2; }

if ! command -v apt-get >/dev/null 2>&1; then
  echo "no apt-get here" >&2
  exit 3
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "not root and no passwordless sudo" >&2
    exit 3
  fi
fi
"${sudo[@]}" apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${opts[@]}" "$@" >&2
