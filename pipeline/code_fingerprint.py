"""A fingerprint of the code a component runs, for its cache key.

Why: Transform and Trainer name their user code by module path (`configs.PREPROCESSING_FN`,
`configs.RUN_FN`). TFX fingerprints a `module_file`'s content, but a module *path* enters the
cache key only as the string, so an edit to `model/trainer.py` or to what it imports
(the export in `model/signatures.py`, the model, the feature table) kept the key, and the
next run served the old model from cache. Putting this fingerprint into each component's
`custom_config` (an exec property, which the launcher hashes into the cache key; Transform
passes it to `preprocessing_fn` only if that takes a `custom_config` argument, which ours
does not) makes any source change re-run them, and an unchanged tree keep its cache.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The packages whose code the Transform and Trainer executors import: the module files
#: (`model.preprocessing`, `model.trainer`) and everything they import from this repository
#: (the feature table in data, the shared helpers in common, hyperparameters and paths in
#: settings, the components). tests/test_code_fingerprint.py checks that this covers the
#: import closure of `configs.PREPROCESSING_FN` and `configs.RUN_FN`.
CODE_PACKAGES = ("common", "components", "data", "model", "settings")


def source_fingerprint(packages: tuple[str, ...] = CODE_PACKAGES, root: Path = ROOT) -> str:
    """sha256 over every .py file of ``packages`` (relative path and content, in sorted order)."""
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()
