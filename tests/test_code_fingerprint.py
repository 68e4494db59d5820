"""The Transform's and Trainer's cache keys cover the code they run (pipeline.code_fingerprint)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

from pipeline import configs
from pipeline.code_fingerprint import CODE_PACKAGES, source_fingerprint
from pipeline.pipeline import create_components


def _tree(root: Path) -> None:
    for package in CODE_PACKAGES:
        (root / package / "sub").mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
        (root / package / "sub" / "mod.py").write_text("X = 1\n")


def test_fingerprint_changes_with_any_source_file_and_only_then(tmp_path):
    _tree(tmp_path)
    before = source_fingerprint(root=tmp_path)
    assert source_fingerprint(root=tmp_path) == before
    (tmp_path / "README.md").write_text("not code")
    assert source_fingerprint(root=tmp_path) == before
    (tmp_path / CODE_PACKAGES[0] / "sub" / "mod.py").write_text("X = 2\n")
    edited = source_fingerprint(root=tmp_path)
    assert edited != before
    (tmp_path / CODE_PACKAGES[-1] / "new.py").write_text("")
    assert source_fingerprint(root=tmp_path) != edited


def test_transform_and_trainer_exec_properties_carry_the_code_fingerprint(tmp_path):
    components = {c.id: c for c in create_components(configs.PipelineConfig(data_dir=str(tmp_path)))}
    expected = source_fingerprint()
    for name in ("Transform", "Trainer"):
        custom_config = json.loads(components[name].exec_properties["custom_config"])
        assert custom_config["code"] == expected, name


def _project_imports(module: str, root: Path) -> set[str]:
    """The repository modules that ``module`` imports, at any depth (read from the source)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = root / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = root / name.replace(".", "/") / "__init__.py"
        if name in seen or not path.exists():
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                todo.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                todo.append(node.module)
                todo.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return seen


def test_fingerprint_covers_every_module_the_transform_and_trainer_run():
    root = Path(__file__).resolve().parents[1]
    for entry in (configs.PREPROCESSING_FN, configs.RUN_FN):
        modules = _project_imports(entry.rsplit(".", 1)[0], root)
        assert entry.split(".")[0] in {m.split(".")[0] for m in modules}
        outside = sorted(m for m in modules if m.split(".")[0] not in CODE_PACKAGES)
        assert not outside, f"{entry} imports {outside}, which the fingerprint does not cover"
