#!/usr/bin/env bash
# Does KFP's own local runner (kfp.local, DockerRunner) execute the pipeline TFX compiles?
#
#   tools/kfp_local_probe.sh IMAGE OUT_DIR
#
# Installs the KFP SDK into a side venv (.venv-kfp: its protobuf 6 cannot share a venv with
# TFX's), serves podman's Docker API on a socket, compiles the pipeline for IMAGE with every
# path under OUT_DIR/root (DockerRunner mounts only the pipeline root into the steps), and runs
# it with kfp.local. It prints how far kfp.local got and the error that stopped it: what
# kubeflow/README.md reports as the missing KFP features. make kubeflow-local does not depend
# on it; it is how those README lines can be checked against a newer KFP.
set -euo pipefail
say() { echo "[kfp-local probe] $*" >&2; }

image="${1:?usage: tools/kfp_local_probe.sh IMAGE OUT_DIR}"
out="$(mkdir -p "${2:?usage: tools/kfp_local_probe.sh IMAGE OUT_DIR}" && cd "$2" && pwd)"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KFP_VERSION="${KFP_VERSION:-2.17.3}"
venv="$root/.venv-kfp"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import kfp, docker; assert kfp.__version__ == '$KFP_VERSION'" 2>/dev/null; then
  say "installing kfp==$KFP_VERSION and docker into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q "kfp==$KFP_VERSION" "docker==7.1.0" >&2
fi

sock="$out/podman.sock"
rm -f "$sock"
podman --runtime runc --cgroup-manager cgroupfs system service --time=0 "unix://$sock" &
service=$!
trap 'kill $service 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.2; done
[ -S "$sock" ] || { say "podman system service did not open $sock"; exit 1; }

mkdir -p "$out/root"
"$root/.venv/bin/python" -m commands.cli generate --size demo --seed 42 --out "$out/root/data/demo" >/dev/null
"$root/.venv/bin/python" -m kubeflow.runner --image "$image" --target kfp --pipeline-root "$out/root/pipeline-root" \
  --data "$out/root/data/demo" --serving-dir "$out/root/serving" --work-dir "$out/root/work" \
  --pvc "unused:/unused" --output "$out/movielens_pipeline.json" >&2
chmod -R a+rwX "$out/root"
DOCKER_HOST="unix://$sock" "$venv/bin/python" "$root/tools/kfp_local_probe.py" "$out/movielens_pipeline.yaml" "$out/root"
