"""Shared pytest fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real MovieLens files at ``../shared/data`` (next to the project root).

    They may not be redistributed, so they live outside the project and a user's checkout has
    no such folder: tests that need them skip instead of failing.
    """
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real MovieLens data not available: {path} does not exist "
                    f"(it is only provided on the project's test machines)")
    return path
