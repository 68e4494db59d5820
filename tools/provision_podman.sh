#!/usr/bin/env bash
# Podman, for `make kubeflow-local`: builds kubeflow/Dockerfile and runs the compiled pipeline's
# steps in the image. Installs Debian's podman, runc and debootstrap where missing (apt-get, as
# tools/provision_browser.sh does for Chromium), writes the project's containers.conf, and
# checks that a container can run here.
#
#   tools/provision_podman.sh CONF_FILE
#
# The containers.conf (pointed at with CONTAINERS_CONF) holds what hosts like CI's need and is
# harmless elsewhere:
#   - runtime runc: crun, podman's default, refuses hybrid cgroup hierarchies;
#   - cgroup_manager cgroupfs: no systemd to ask for cgroups in a CI container;
#   - default_ulimits = []: setting rlimits is not permitted in unprivileged CI sandboxes.
# Without apt-get, or without root and passwordless sudo, it says what to install and fails.
set -euo pipefail

say() { echo "[podman] $*" >&2; }
die() { echo "[podman] ERROR: $*" >&2; exit 1; }

conf="${1:?usage: tools/provision_podman.sh CONF_FILE}"

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} from the Debian archive (apt-get)"
  bash "$(dirname "$0")/apt_install.sh" --no-install-recommends "${missing[@]}" uidmap slirp4netns fuse-overlayfs \
    || die "could not install ${missing[*]} (see above); install them yourself (Debian/Ubuntu: apt-get install ${missing[*]})"
fi

mkdir -p "$(dirname "$conf")"
cat > "$conf" <<'EOF'
# Written by tools/provision_podman.sh for make kubeflow-local (CONTAINERS_CONF points here).
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF

export CONTAINERS_CONF="$conf"
if ! out=$(podman info --format '{{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}}' 2>&1); then
  die "podman cannot start here: $out"
fi
say "$(podman --version), runtime and storage: $out"
