"""Shared fixtures: a real kit on disk, a generated census, printed PDFs rendered with pypdfium2."""
from __future__ import annotations

from pathlib import Path

import pytest

from fallbackkit.generate import print_blank, print_ward
from kit_helpers import census_kit
from pdf_helpers import render_pages  # noqa: F401  (re-exported for tests)


@pytest.fixture
def kit(tmp_path: Path):
    """A fresh kit with the shipped templates and a two-ward census (3B: 8 beds, ICU: 4)."""
    k = census_kit(tmp_path)
    yield k
    k.close()


@pytest.fixture
def ward_pack(kit, tmp_path: Path):
    """Ward 3B printed one-sided (one PDF page per sheet, no blank backs): (PrintResult, pdf path)."""
    result = print_ward(kit, "3B", tmp_path / "ward-3B.pdf", actor="tester", one_sided=True)
    return result


@pytest.fixture
def blank_lab(kit, tmp_path: Path):
    return print_blank(kit, "lab-request", 3, tmp_path / "lab-blank.pdf", actor="tester")
