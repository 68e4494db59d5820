"""`make kubeflow-local`: the pipeline image built, and the compiled Kubeflow pipeline run in it.

    python -m kubeflow.local_run [--out artifacts/kubeflow-local] [--image localhost/movielens-tfx:local]

What a platform team would run on a cluster, on one machine with podman:

1. the pipeline image, built from kubeflow/Dockerfile (target `pipeline`) on
   `python:3.11-slim-trixie`, or, where no registry can be reached, on a stand-in made from
   the Debian archive (tools/stand_in_base.sh); the Beam worker target too where its SDK
   image can be pulled;
2. the pipeline compiled for that image by `kubeflow.runner` (target kfp), on the demo's
   generated data;
3. every step of the compiled spec run in the image as its non-root user (uid 10001), in DAG
   order, with the inputs and outputs KFP's launcher would give it (kubeflow.launcher): KFP's
   own local runner cannot execute TFX's spec (kubeflow/README.md says what it lacks). The
   host folder `--out` is mounted where a cluster mounts its volumes;
4. the pushed, blessed model served by the local model server and asked for a rating with
   `movielens-tfx rate`.

It prints the image's size and every step's seconds, and writes them to <out>/summary.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from common.errors import UserError
from kubeflow import launcher, runner
from kubeflow.podman import Podman, PodmanError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("artifacts") / "kubeflow-local"
DEFAULT_IMAGE = "localhost/movielens-tfx:local"
PYTHON_IMAGE = "docker.io/library/python:3.11-slim-trixie"
STAND_IN_IMAGE = "localhost/python:3.11-slim-trixie-stand-in"
BEAM_SDK_IMAGE = "docker.io/apache/beam_python3.11_sdk:2.77.0"
#: where the steps see the output folder and the data (the volumes a cluster mounts)
CONTAINER_OUT = "/mnt/out"
CONTAINER_DATA = "/mnt/data"
#: the image's user (kubeflow/Dockerfile), as a cluster's securityContext runs it
STEP_USER = "10001:10001"
#: the host's pip settings a build needs to reach the package index (../shared/containers.md)
PIP_FILES = ("/etc/pip.conf", "/etc/ssl/certs/ca-certificates.crt", "/opt/pypi", "/opt/pypi-more", "/opt/wheels")


def say(message: str) -> None:
    print(f"[kubeflow-local] {message}", file=sys.stderr, flush=True)


def base_image(podman: Podman) -> tuple[str, str]:
    """(the base image to build on, how it was had): the real one if it can be pulled, else
    the stand-in (built once, then reused)."""
    if podman.image_exists(PYTHON_IMAGE):
        return PYTHON_IMAGE, "present"
    why = podman.try_pull(PYTHON_IMAGE)
    if why is None:
        return PYTHON_IMAGE, "pulled"
    say(f"{PYTHON_IMAGE} cannot be pulled ({why}); building on a stand-in from the Debian archive")
    if not podman.image_exists(STAND_IN_IMAGE):
        started = time.perf_counter()
        done = subprocess.run(["bash", str(ROOT / "tools" / "stand_in_base.sh"), STAND_IN_IMAGE], env=podman.env)
        if done.returncode != 0:
            raise UserError(f"the stand-in base image could not be built (tools/stand_in_base.sh exit {done.returncode})")
        say(f"stand-in base built in {time.perf_counter() - started:.0f} s")
    return STAND_IN_IMAGE, "stand-in (tools/stand_in_base.sh)"


def build(podman: Podman, image: str, base: str, target: str = "pipeline") -> float:
    """Builds ``target`` of kubeflow/Dockerfile as ``image``; returns its seconds.

    The build stage is built first under a name of its own (``image``-build-stage), so that what
    a rebuild replaces has a name to find it by: the images those two names held before are
    removed once both builds succeed (Podman.remove_replaced), and reruns do not pile up.
    """
    stage = f"{image}-build-stage"
    replaced = {name: podman.image_id(name) for name in (stage, image)}
    seconds = 0.0
    for name, stage_target in ((stage, "build"), (image, target)):
        args = ["build", "--network=host", "--file", str(ROOT / "kubeflow" / "Dockerfile"), "--target", stage_target,
                "--build-arg", f"PYTHON_IMAGE={base}", "--tag", name]
        for path in PIP_FILES:
            if os.path.exists(path):
                args += ["--volume", f"{path}:{path}:ro"]
        args.append(str(ROOT))
        status, took, tail = podman.stream(args, "[build]")
        if status != 0:
            raise PodmanError(f"podman build of {name} (target {stage_target}) failed (exit {status}):\n"
                              + "\n".join(tail[-15:]))
        seconds += took
    for name, old_id in replaced.items():
        if podman.remove_replaced(old_id, name):
            say(f"removed the image {name} named before this build ({old_id[:12]})")
    return seconds


def compile_spec(image: str, out: Path, data_name: str) -> dict:
    """The pipeline compiled for ``image`` by kubeflow.runner, paths as the steps see them."""
    args = runner.build_parser().parse_args([
        "--image", image, "--target", "kfp",
        "--pipeline-root", f"{CONTAINER_OUT}/pipeline-root",
        "--data", f"{CONTAINER_DATA}/{data_name}",
        "--serving-dir", f"{CONTAINER_OUT}/serving", "--work-dir", f"{CONTAINER_OUT}/work",
        "--output", str(out / "movielens_pipeline.json"), "--pvc", "movielens-out:/mnt/out"])
    result = runner.compile_from_args(args)
    return json.loads(Path(result["json"]).read_text())["pipelineSpec"]


def serve_and_rate(serving_dir: Path, user: int, movie: int, timeout: float = 180) -> float:
    """Serves the pushed model with the local model server and rates (user, movie) through
    `movielens-tfx rate`; returns the rating."""
    from common.ports import free_ports

    port = free_ports(1)[0]
    server = subprocess.Popen([sys.executable, "-m", "commands.serve", "--server=python",
                               f"--model_base_path={serving_dir / 'movielens'}", f"--port={port}",
                               "--rest_api_port=0"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise UserError(f"the model server exited ({server.returncode}): {server.stderr.read()[-1500:]}")
            done = subprocess.run([sys.executable, "-m", "commands.cli", "rate", "--user", str(user), "--movie",
                                   str(movie), "--target", f"127.0.0.1:{port}", "--retries", "1"],
                                  cwd=ROOT, capture_output=True, text=True)
            if done.returncode == 0:
                print(done.stdout.strip())
                numbers = [float(tok) for tok in done.stdout.replace(",", " ").split() if _is_float(tok)]
                return numbers[-1]
            last = done.stderr.strip()[-500:]
            time.sleep(2)
        raise UserError(f"the served model did not answer within {timeout:.0f} s: {last}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _is_float(token: str) -> bool:
    try:
        float(token)
        return "." in token
    except ValueError:
        return False


def run(out: Path, image: str, skip_build: bool, conf: str | None) -> dict:
    from pipeline.run import resolve_data
    from settings.paths import ArtifactPaths

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    podman = Podman(conf)
    summary: dict = {"image": image}
    started = time.perf_counter()
    if not skip_build or not podman.image_exists(image):
        base, how = base_image(podman)
        podman.check_runs(base)
        summary["base_image"] = {"image": base, "how": how}
        summary["build_seconds"] = round(build(podman, image, base), 1)
        why = podman.try_pull(BEAM_SDK_IMAGE) if not podman.image_exists(BEAM_SDK_IMAGE) else None
        if why is None:
            summary["beam_worker"] = {"built": True, "seconds": round(build(podman, image + "-beam", base, "beam-worker"), 1)}
        else:
            summary["beam_worker"] = {"built": False, "why": f"{BEAM_SDK_IMAGE} cannot be pulled here: {why}"}
            say(f"beam-worker target not built (unverified): {BEAM_SDK_IMAGE} cannot be pulled")
    podman.check_runs(image)
    summary["image_bytes"] = podman.image_size(image)
    say(f"image {image}: {summary['image_bytes'] / 1e9:.2f} GB")

    data_dir = Path(resolve_data("synthetic", ArtifactPaths(str(out)), size="demo", seed=42))
    spec = compile_spec(image, out, data_dir.name)
    for name in ("pipeline-root", "serving", "work"):  # what the steps write: the Pusher, checkpoints
        (out / name).mkdir(exist_ok=True)
        _hand_to_step_user(out / name, out)
    run_id = time.strftime("%Y%m%d-%H%M%S")
    logs = out / "logs" / run_id
    logs.mkdir(parents=True, exist_ok=True)

    def host_path(container_path: str) -> str:
        if container_path == CONTAINER_OUT or container_path.startswith(CONTAINER_OUT + "/"):
            return str(out) + container_path[len(CONTAINER_OUT):]
        raise ValueError(f"{container_path} is not under {CONTAINER_OUT}")

    volumes = [(str(out), CONTAINER_OUT, "rw"), (str(data_dir.parent), CONTAINER_DATA, "ro")]

    def run_container(step: launcher.Step) -> float:
        for folder in step.output_dirs:
            _hand_to_step_user(Path(host_path(folder)), out)
        seconds = 0.0
        with open(logs / f"{step.task}.log", "w") as log:
            if step.pre_cache_check:
                command, args = step.pre_cache_check
                status, took, tail = podman.run(step.image, [*command, *args], prefix=f"[{step.task} driver]",
                                                user=STEP_USER, volumes=volumes, env=step.env, log=log)
                seconds += took
                if status != 0:
                    raise UserError(f"step {step.task}: its driver (preCacheCheck) failed (exit {status}):\n"
                                    + "\n".join(tail[-15:]))
            status, took, tail = podman.run(step.image, [*step.command, *step.args], prefix=f"[{step.task}]",
                                            user=STEP_USER, volumes=volumes, env=step.env, log=log)
            seconds += took
        if status != 0:
            raise UserError(f"step {step.task} failed (exit {status}); its log: {logs / (step.task + '.log')}\n"
                            + "\n".join(tail[-15:]))
        return seconds

    def on_step(task: str, seconds: float) -> None:
        say(f"step {task}: {seconds:.1f} s (in {image}, as uid {STEP_USER.split(':')[0]})")

    steps = launcher.Launcher(spec, f"{CONTAINER_OUT}/pipeline-root", run_container, host_path,
                              run_id=run_id).run(on_step=on_step)
    summary["step_seconds"] = steps
    summary["steps_total_seconds"] = round(sum(steps.values()), 1)

    versions = sorted((out / "serving" / "movielens").glob("[0-9]*")) if (out / "serving" / "movielens").exists() else []
    if not versions:
        raise UserError(f"the pipeline ran but pushed no model to {out / 'serving' / 'movielens'} "
                        "(the Evaluator did not bless it?): see the Evaluator's and Pusher's logs in " + str(logs))
    summary["pushed_model"] = str(versions[-1].relative_to(out))
    user, movie = _a_rating(data_dir)
    summary["served"] = {"user": user, "movie": movie, "predicted": serve_and_rate(out / "serving", user, movie)}
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return summary


def _a_rating(data_dir: Path) -> tuple[int, int]:
    """The (user, movie) of the data's first rating (ratings.dat, `::`-separated)."""
    with open(data_dir / "ratings.dat", encoding="latin-1") as handle:
        user, movie = handle.readline().split("::")[:2]
    return int(user), int(movie)


def _hand_to_step_user(path: Path, top: Path) -> None:
    """The steps run as uid 10001 (as on a cluster): a folder they write, and each folder
    between it and ``top``, must be theirs (the launcher makes them as this user)."""
    uid, gid = (int(x) for x in STEP_USER.split(":"))
    path, top = path.resolve(), top.resolve()
    for folder in [path, *path.parents]:
        if folder == top or top not in folder.parents:
            break
        if os.geteuid() == 0:
            os.chown(folder, uid, gid)
        else:  # rootless podman maps uid 10001 into the user's subordinate ids: open the folder instead
            os.chmod(folder, 0o777)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubeflow.local_run", description=__doc__.split("\n\n")[0],
                                     epilog="See kubeflow/README.md, 'Run the compiled pipeline locally'.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output folder: pipeline root, pushed model, logs, summary.json (default: %(default)s)")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="the pipeline image's name (default: %(default)s)")
    parser.add_argument("--skip-build", action="store_true", help="reuse the image if it exists")
    parser.add_argument("--containers-conf", default=os.environ.get("CONTAINERS_CONF"),
                        help="podman's containers.conf (tools/provision_podman.sh writes it; default: $CONTAINERS_CONF)")
    args = parser.parse_args(argv)
    try:
        summary = run(args.out, args.image, args.skip_build, args.containers_conf)
    except UserError as error:
        say(f"ERROR: {error}")
        return 2
    print(f"\nimage {summary['image']}: {summary['image_bytes'] / 1e9:.2f} GB"
          + (f" (built in {summary['build_seconds']:.0f} s on {summary['base_image']['image']})"
             if "build_seconds" in summary else ""))
    print("| step | seconds |\n|---|---|")
    for task, seconds in summary["step_seconds"].items():
        print(f"| {task} | {seconds:.1f} |")
    print(f"| **all steps** | {summary['steps_total_seconds']:.1f} |")
    served = summary["served"]
    print(f"pushed {summary['pushed_model']}; rate --user {served['user']} --movie {served['movie']}: "
          f"{served['predicted']:.4f}")
    print(f"summary: {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
