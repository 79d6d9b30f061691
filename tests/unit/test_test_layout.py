"""pytest imports test modules by their file name (rootdir-relative packages are not used here), so two collected
test files with one basename stop the whole run at collection ("import file mismatch")."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]
NOT_COLLECTED = {"infra", "doubles"}  # pyproject norecursedirs: the testinfra suite runs on its own


def test_collected_test_files_have_unique_basenames() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py")
                    if not NOT_COLLECTED & set(p.relative_to(TESTS).parts) and "__pycache__" not in p.parts)
    assert not [n for n, k in names.items() if k > 1]
