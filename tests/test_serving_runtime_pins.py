"""`make check-serving-runtime` refuses to run when the serving runtime pins drift apart.

The check is only meaningful under the TensorFlow of the image production runs, so the
manifests' tensorflow/serving tag, SERVING_RUNTIME_TF (Makefile) and tensorflow-serving-api
(pyproject.toml) must agree; the driver says which file holds which value when they do not.
The side-venv install itself is the CI step (.ci/run), not a unit test.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from commands import check_serving_runtime, serving_pins

ROOT = Path(__file__).resolve().parents[1]


def _manifest_with_tag(tmp_path: Path, tag: str) -> Path:
    text = (ROOT / serving_pins.SERVING_MANIFEST).read_text()
    copy = tmp_path / "tf-serving.yaml"
    copy.write_text(re.sub(r"image: tensorflow/serving:\S+", f"image: tensorflow/serving:{tag}", text, count=1))
    return copy


def test_the_real_files_agree(capsys):
    assert check_serving_runtime.main(["--pins-only"]) == 0
    assert "pins agree: tensorflow/serving:" in capsys.readouterr().err
    version = serving_pins.runtime_version()
    assert version == serving_pins.image_pin().version == serving_pins.makefile_pin().version


def test_a_manifest_with_another_tag_fails_naming_both_values_and_files(tmp_path, capsys):
    manifest = _manifest_with_tag(tmp_path, "2.99.0")
    assert "tensorflow/serving:2.99.0" in manifest.read_text()
    assert check_serving_runtime.main(["--pins-only", "--manifest", str(manifest)]) == 1
    err = capsys.readouterr().err
    pinned = serving_pins.makefile_pin().version
    assert "the serving runtime pins have drifted apart" in err
    assert "2.99.0" in err and pinned in err
    for file in (str(manifest), "Makefile", "pyproject.toml"):
        assert file in err, file
    assert "SERVING_RUNTIME_TF" in err and "tensorflow-serving-api" in err


def test_a_runtime_override_that_disagrees_fails_before_installing(tmp_path, capsys):
    venv = tmp_path / "never-made"
    assert check_serving_runtime.main(["--runtime-tf", "2.18.0", "--venv", str(venv)]) == 1
    assert "2.18.0" in capsys.readouterr().err and not venv.exists()


@pytest.mark.parametrize("image, problem", [("tensorflow/serving:latest", "not a release tag"),
                                            ("tensorflow/serving@sha256:" + "0" * 64, "no release tag")])
def test_a_tag_that_names_no_version_fails(tmp_path, image, problem):
    manifest = tmp_path / "tf-serving.yaml"
    manifest.write_text(f"kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n"
                        f"        - name: s\n          image: {image}\n")
    with pytest.raises(serving_pins.PinError, match=problem):
        serving_pins.image_pin(ROOT, manifest)


def test_a_kustomization_retag_is_the_deployed_version(tmp_path):
    kustomization = tmp_path / "kustomization.yaml"
    kustomization.write_text("images:\n  - name: tensorflow/serving\n    newTag: 2.20.0-gpu\n")
    pin = serving_pins.image_pin(ROOT, kustomization=kustomization)
    assert pin.version == "2.20.0" and pin.file == str(kustomization)


def test_make_target_runs_the_driver_with_the_makefile_pin():
    dry = subprocess.run(["make", "-n", "-o", "install", "-o", ".venv/.installed", "check-serving-runtime"],
                         cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert f"-m commands.check_serving_runtime --runtime-tf {serving_pins.makefile_pin().version}" in dry.stdout
    assert "make check-serving-runtime" in (ROOT / ".ci" / "run").read_text()


def test_no_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no pushed model"):
        check_serving_runtime.pick_model_base(None, root=tmp_path)
    (tmp_path / "artifacts" / "serving" / "movielens" / "7").mkdir(parents=True)
    (tmp_path / "artifacts" / "serving" / "movielens" / "7" / "saved_model.pb").write_bytes(b"")
    assert check_serving_runtime.pick_model_base(None, root=tmp_path) == tmp_path / check_serving_runtime.DEMO_MODEL


def test_check_script_imports_nothing_of_the_project():
    """tools/serving_runtime_check.py runs under another TensorFlow, outside the project."""
    import ast

    tree = ast.parse((ROOT / "tools" / "serving_runtime_check.py").read_text())
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    allowed = set(sys.stdlib_module_names) | {"numpy", "tensorflow", "tensorflow_serving"}
    assert modules <= allowed, modules - allowed
