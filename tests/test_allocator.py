"""The pipeline turns NumPy's huge-page advice off (common.allocator), unless the user chose."""
import pytest
from numpy._core import multiarray

from common.allocator import no_numpy_hugepages


@pytest.fixture
def advice():
    before = multiarray._set_madvise_hugepage(True)
    yield
    multiarray._set_madvise_hugepage(before)


def test_the_advice_is_turned_off(advice, monkeypatch):
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    no_numpy_hugepages()
    assert multiarray._set_madvise_hugepage(True) is False  # returns the setting it replaced


def test_numpy_s_own_switch_wins(advice, monkeypatch):
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    no_numpy_hugepages()
    assert multiarray._set_madvise_hugepage(True) is True
