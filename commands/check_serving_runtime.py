"""`make check-serving-runtime`: the latest pushed model, loaded by the serving image's TensorFlow.

    python -m commands.check_serving_runtime [--model-base-path DIR] [--runtime-tf 2.19.1]

Why: the model is saved by the project's TensorFlow (2.21) and served in production by the
`tensorflow/serving` image the manifests pin, whose runtime is an older TensorFlow; nothing
else in `make test` runs the model under that runtime. Steps:

  1. the pins agree (commands.serving_pins): the manifests' image tag, SERVING_RUNTIME_TF in
     the Makefile and tensorflow-serving-api in pyproject.toml; if not, exit 1 with all three
     values and the files to change, before installing anything;
  2. a side virtualenv (default .venv-serving-runtime/, gitignored) holds tensorflow-cpu of
     that version and tensorflow-serving-api of it with --no-deps (its pb2 modules; its
     dependency on `tensorflow` would pull in a second, full TensorFlow). It is reused while
     its stamp names the same versions and interpreter, rebuilt otherwise;
  3. the model base path: --model-base-path, else the one the e2e test pushed
     (artifacts/e2e/serving/movielens), else the demo's (artifacts/serving/movielens); exit 2
     if none holds a version;
  4. sample inputs from the feature table and the model's catalogue (commands.runtime_samples),
     then tools/serving_runtime_check.py in the side venv, whose exit status this returns.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from commands import serving_pins
from commands.serving_pins import ROOT, PinError
from index.embed import model_versions

DEFAULT_VENV = ROOT / ".venv-serving-runtime"
CHECK_SCRIPT = ROOT / "tools" / "serving_runtime_check.py"
E2E_MODEL = Path("artifacts") / "e2e" / "serving" / "movielens"
DEMO_MODEL = Path("artifacts") / "serving" / "movielens"
STAMP = ".stamp"
#: Interpreters tensorflow-cpu 2.19 has wheels for, preferred first (the project's is 3.11).
PYTHON_CANDIDATES = ("python3.11", "python3.12", "python3.10")


def say(message: str) -> None:
    print(f"[check-serving-runtime] {message}", file=sys.stderr, flush=True)


def latest_version(base: Path) -> Path | None:
    """The folder TF-Serving would serve from ``base`` (latest version with a SavedModel), or None."""
    versions = model_versions(base)
    return base / str(versions[-1]) if versions else None


def pick_model_base(given: Path | None, root: Path = ROOT) -> Path:
    """--model-base-path, else the e2e test's push, else the demo's; FileNotFoundError if none."""
    candidates = [given] if given is not None else [root / E2E_MODEL, root / DEMO_MODEL]
    for base in candidates:
        if latest_version(base) is not None:
            return base
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"no pushed model (a numeric version folder with saved_model.pb) in {tried}. Push one first: "
        f"`make test` (its e2e tier leaves {E2E_MODEL}) or `make demo` ({DEMO_MODEL}), or pass "
        f"--model-base-path (make check-serving-runtime SERVING_RUNTIME_MODEL=DIR).")


def pick_python(given: str | None) -> str:
    for name in ([given] if given else PYTHON_CANDIDATES):
        found = shutil.which(name) if name else None
        if found:
            return os.path.realpath(found)
    raise FileNotFoundError(f"no interpreter for the side venv: tried {given or ', '.join(PYTHON_CANDIDATES)} "
                            f"(tensorflow-cpu wheels need CPython 3.9-3.12); pass --python")


def requirements(version: str) -> tuple[str, str]:
    return f"tensorflow-cpu=={version}", f"{serving_pins.SERVING_API}=={version}"


def stamp_text(version: str, python: str) -> str:
    return "\n".join((*requirements(version), f"python={python}")) + "\n"


def _clean_env() -> dict[str, str]:
    """The environment without the project's PYTHONPATH: the side venv must not see the project."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def ensure_venv(venv: Path, version: str, python: str) -> Path:
    """The side venv's interpreter, (re)built unless its stamp matches; RuntimeError on failure."""
    stamp = venv / STAMP
    interpreter = venv / "bin" / "python"
    if stamp.is_file() and stamp.read_text() == stamp_text(version, python) and interpreter.exists():
        say(f"reusing {venv} (tensorflow-cpu {version})")
        return interpreter
    if venv.exists():
        say(f"{venv} is for other pins or unfinished: rebuilding it")
        shutil.rmtree(venv)
    tensorflow, serving_api = requirements(version)
    say(f"creating {venv} with {python}: {tensorflow}, {serving_api} --no-deps (about a minute, ~1.4 GB)")
    pip = [str(interpreter), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for command in ([python, "-m", "venv", str(venv)], pip + [tensorflow], pip + ["--no-deps", serving_api]):
        if subprocess.run(command, env=_clean_env()).returncode != 0:
            raise RuntimeError(f"`{' '.join(command)}` failed; see pip's messages above")
    # tensorflow-cpu is the runtime; a distribution named plain `tensorflow` would be a second one
    probe = ("import importlib.metadata as m, sys; names = {d.metadata['Name'].lower().replace('_', '-') "
             "for d in m.distributions()}; sys.exit('tensorflow' in names)")
    if subprocess.run([str(interpreter), "-c", probe], env=_clean_env()).returncode != 0:
        raise RuntimeError(f"{venv} has a `tensorflow` distribution besides tensorflow-cpu; remove {venv} and retry")
    stamp.write_text(stamp_text(version, python))
    return interpreter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="check-serving-runtime", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-base-path", type=Path, default=None,
                        help=f"folder of version folders (default: {E2E_MODEL} if it has one, else {DEMO_MODEL})")
    parser.add_argument("--runtime-tf", default=None,
                        help=f"tensorflow-cpu version to run (default: {serving_pins.MAKE_VARIABLE} in the Makefile); "
                             f"must equal the manifests' image tag")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"side virtualenv (default: {DEFAULT_VENV})")
    parser.add_argument("--python", default=None,
                        help=f"interpreter for the side venv (default: the first of {', '.join(PYTHON_CANDIDATES)})")
    parser.add_argument("--manifest", type=Path, default=None, help=f"(tests) instead of {serving_pins.SERVING_MANIFEST}")
    parser.add_argument("--pins-only", action="store_true", help="check that the pins agree, then stop")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        version = serving_pins.runtime_version(ROOT, args.runtime_tf, manifest=args.manifest)
    except PinError as error:
        say(f"ERROR: {error}")
        return 1
    say(f"pins agree: tensorflow/serving:{version}, {serving_pins.MAKE_VARIABLE}={version}, "
        f"{serving_pins.SERVING_API}=={version}")
    if args.pins_only:
        return 0
    try:
        base = pick_model_base(args.model_base_path)
        interpreter = ensure_venv(args.venv.resolve(), version, pick_python(args.python))
    except (FileNotFoundError, RuntimeError) as error:
        say(f"ERROR: {error}")
        return 2
    from commands.runtime_samples import write_samples  # reads the catalogue: TFX's imports, seconds

    with tempfile.TemporaryDirectory(prefix="serving-runtime-") as tmp:
        samples = write_samples(latest_version(base), Path(tmp) / "samples.json")
        command = [str(interpreter), str(CHECK_SCRIPT), "--model-base-path", str(base),
                   "--expect-tf", version, "--samples", str(samples)]
        say(f"running {CHECK_SCRIPT.relative_to(ROOT)} under tensorflow-cpu {version} on {base}")
        return subprocess.run(command, env=_clean_env(), cwd=tmp).returncode


if __name__ == "__main__":
    sys.exit(main())
