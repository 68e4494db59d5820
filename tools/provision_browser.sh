#!/usr/bin/env bash
# Headless Chromium for the browse page's browser test (tests/test_browse_page.py): Debian's
# `chromium` and `chromium-driver` packages, which Selenium drives through chromedriver, so
# nothing is downloaded from a browser vendor. `make install` runs this; it is a no-op where
# both are on PATH already. Without apt-get, or without root and passwordless sudo, it says
# what to install and leaves the rest of the set-up alone (the demo needs no browser; the test
# fails with the same message).
set -euo pipefail

say() { echo "[browser] $*" >&2; }

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
manual="install Chromium and its chromedriver yourself (Debian/Ubuntu: apt-get install chromium chromium-driver)"
if ! command -v apt-get >/dev/null 2>&1; then
  say "WARNING: no apt-get here: $manual; the browser test needs them"
  exit 0
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    say "WARNING: not root and no passwordless sudo: $manual; the browser test needs them"
    exit 0
  fi
fi
say "installing chromium and chromium-driver from the Debian archive (apt-get; a few minutes)"
"${sudo[@]}" apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q chromium chromium-driver >&2
say "$(chromium --version 2>/dev/null || echo chromium), $(chromedriver --version 2>/dev/null | cut -d' ' -f1-2)"
