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
say "installing chromium and chromium-driver from the Debian archive (apt-get; a few minutes)"
rc=0
bash "$(dirname "$0")/apt_install.sh" chromium chromium-driver || rc=$?
if [ "$rc" != 0 ]; then
  say "WARNING: could not install them (see above): $manual; the browser test needs them"
  exit 0
fi
say "$(chromium --version 2>/dev/null || echo chromium), $(chromedriver --version 2>/dev/null | cut -d' ' -f1-2)"
