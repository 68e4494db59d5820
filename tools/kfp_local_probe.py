"""Runs a compiled pipeline YAML with kfp.local's DockerRunner and reports where it stops.

    DOCKER_HOST=unix:///PATH/podman.sock .venv-kfp/bin/python tools/kfp_local_probe.py PIPELINE.yaml ROOT

Run by tools/kfp_local_probe.sh (which sets up the KFP SDK and podman's Docker API). Prints one
line per finding and exits 0 whether or not the pipeline ran: its output is the finding.
"""
import sys
import traceback

import kfp
from kfp import components, local


def main(spec_path: str, root: str) -> int:
    local.init(runner=local.DockerRunner(user="10001:10001"), pipeline_root=root, raise_on_error=True)
    pipeline = components.load_component_from_file(spec_path)
    print(f"[kfp-local probe] kfp {kfp.__version__}: running {spec_path} with kfp.local.DockerRunner")
    try:
        pipeline()
    except Exception as error:  # the finding: where and why kfp.local stopped
        lines = [line for line in traceback.format_exception_only(type(error), error) if line.strip()]
        print("[kfp-local probe] kfp.local stopped: " + " ".join(l.strip() for l in lines)[-3000:])
        return 0
    print("[kfp-local probe] kfp.local ran the whole pipeline")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
