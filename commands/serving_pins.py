"""The serving runtime's version, as three files pin it, and whether they agree.

Why three: production serves the pushed model with the `tensorflow/serving` image of
kubeflow/manifests/tf-serving.yaml (a kustomization `images:` entry may retag it); the
serving-runtime check (`make check-serving-runtime`) installs `tensorflow-cpu` of the version
the Makefile's SERVING_RUNTIME_TF names; the project's own client and compatible server use
`tensorflow-serving-api` pinned in pyproject.toml. The check only proves something when it
runs the image's TensorFlow, so when the three drift apart it refuses to run and says which
file holds which value. Reads text and YAML only (no TensorFlow): the unit test is instant.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVING_IMAGE = "tensorflow/serving"
MANIFESTS = Path("kubeflow") / "manifests"
SERVING_MANIFEST = MANIFESTS / "tf-serving.yaml"
KUSTOMIZATION = MANIFESTS / "kustomization.yaml"
MAKEFILE = Path("Makefile")
PYPROJECT = Path("pyproject.toml")
MAKE_VARIABLE = "SERVING_RUNTIME_TF"
SERVING_API = "tensorflow-serving-api"
# a release tag, optionally with the image variant: 2.19.1, 2.19.1-gpu
_RELEASE_TAG = re.compile(r"^(\d+\.\d+\.\d+)(?:-[\w.-]+)?$")


class PinError(RuntimeError):
    """A pin is missing, unreadable, or the pins disagree (the message says what to change)."""


@dataclass(frozen=True)
class Pin:
    """One file's idea of the serving runtime version."""

    file: str     # repo-relative, to name in messages
    what: str     # what in that file holds it
    version: str


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _images(node: object) -> list[str]:
    """Every `image:` of a container (or initContainer) anywhere in a parsed manifest."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found += [c["image"] for c in value if isinstance(c, dict) and "image" in c]
            else:
                found += _images(value)
    elif isinstance(node, list):
        for item in node:
            found += _images(item)
    return found


def image_pin(root: Path = ROOT, manifest: Path | None = None, kustomization: Path | None = None) -> Pin:
    """The tensorflow/serving image tag the manifests deploy (a kustomization newTag wins)."""
    manifest = manifest or root / SERVING_MANIFEST
    kustomization = kustomization or root / KUSTOMIZATION
    try:
        docs = list(yaml.safe_load_all(manifest.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as error:
        raise PinError(f"cannot read the TF-Serving manifest {_relative(manifest, root)}: {error}") from None
    images = [image for image in _images(docs) if image.split("@")[0].rsplit(":", 1)[0] == SERVING_IMAGE]
    if len(set(images)) != 1:
        raise PinError(f"{_relative(manifest, root)}: expected one {SERVING_IMAGE}:<version> image, "
                       f"found {sorted(set(images)) or 'none'}")
    image, file, what = images[0], _relative(manifest, root), f"image {images[0]}"
    if kustomization.is_file():
        overrides = (yaml.safe_load(kustomization.read_text(encoding="utf-8")) or {}).get("images") or []
        for entry in overrides:
            if entry.get("name") == SERVING_IMAGE and ("newTag" in entry or "digest" in entry):
                if "digest" in entry:
                    raise PinError(f"{_relative(kustomization, root)} pins {SERVING_IMAGE} by digest; "
                                   f"pin a release tag (newTag) so the runtime version is known")
                image = f"{SERVING_IMAGE}:{entry['newTag']}"
                file, what = _relative(kustomization, root), f"images: {SERVING_IMAGE} newTag {entry['newTag']}"
    if "@" in image or ":" not in image:
        raise PinError(f"{file}: {what} has no release tag; pin {SERVING_IMAGE}:<x.y.z>")
    match = _RELEASE_TAG.match(image.rsplit(":", 1)[1])
    if match is None:
        raise PinError(f"{file}: {what} is not a release tag (x.y.z); pin {SERVING_IMAGE}:<x.y.z>")
    return Pin(file, what, match.group(1))


def makefile_pin(root: Path = ROOT, makefile: Path | None = None) -> Pin:
    """`SERVING_RUNTIME_TF ?= x.y.z` in the Makefile: the tensorflow-cpu the check installs."""
    makefile = makefile or root / MAKEFILE
    text = makefile.read_text(encoding="utf-8") if makefile.is_file() else ""
    match = re.search(rf"^{MAKE_VARIABLE}\s*[?:]?=\s*(\S+)", text, re.MULTILINE)
    if match is None:
        raise PinError(f"{_relative(makefile, root)}: no `{MAKE_VARIABLE} ?= <version>` line")
    return Pin(_relative(makefile, root), MAKE_VARIABLE, match.group(1))


def serving_api_pin(root: Path = ROOT, pyproject: Path | None = None) -> Pin:
    """`tensorflow-serving-api==x.y.z` in pyproject.toml's dependencies."""
    pyproject = pyproject or root / PYPROJECT
    match = re.search(rf'"{re.escape(SERVING_API)}==([^"\s;]+)"', pyproject.read_text(encoding="utf-8"))
    if match is None:
        raise PinError(f"{_relative(pyproject, root)}: no \"{SERVING_API}==<version>\" dependency")
    return Pin(_relative(pyproject, root), f"{SERVING_API}==", match.group(1))


def check_pins(image: Pin, *others: Pin) -> str:
    """The one version all pins name; PinError listing every pin and its file when they differ."""
    pins = (image, *others)
    if len({pin.version for pin in pins}) == 1:
        return image.version
    listing = "\n".join(f"  {pin.version:<10} {pin.file}  ({pin.what})" for pin in pins)
    raise PinError(
        f"the serving runtime pins have drifted apart:\n{listing}\n"
        f"Production serves the model with the image's TensorFlow ({image.version}); set every one "
        f"of these to the same version (the image in {image.file} first, then {MAKE_VARIABLE} in "
        f"{MAKEFILE} and {SERVING_API} in {PYPROJECT}), then run `make check-serving-runtime`.")


def runtime_version(root: Path = ROOT, runtime: str | None = None, manifest: Path | None = None,
                    kustomization: Path | None = None) -> str:
    """The agreed version; ``runtime`` (e.g. `make SERVING_RUNTIME_TF=...`) replaces the
    Makefile's default, so an override that disagrees with the image fails too."""
    make = makefile_pin(root)
    if runtime is not None and runtime != make.version:
        make = Pin(f"{MAKE_VARIABLE}={runtime} (command line)", MAKE_VARIABLE, runtime)
    return check_pins(image_pin(root, manifest, kustomization), make, serving_api_pin(root))
