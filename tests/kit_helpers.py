"""A real kit on disk with the generated census imported: what most scenario tests start from."""
from __future__ import annotations

from pathlib import Path

from fallbackkit.generate import import_census
from fallbackkit.generate.sample import write_census
from fallbackkit.store import Kit, init_kit

AS_OF = "2026-11-28T06:00:00+01:00"


def census_kit(root: Path, wards: dict[str, int] | None = None) -> Kit:
    """ROOT/kit with the shipped templates and a generated census in ROOT/census (default two wards,
    3B: 8 beds, ICU: 4)."""
    kit = init_kit(root / "kit", actor="tester")
    patients, meds = write_census(root / "census", wards)
    import_census(kit, patients, meds, actor="tester", as_of=AS_OF)
    return kit


def drawn_sheets(monkeypatch) -> list:
    """The sheets the renderer draws from now on (their layout and header), in order: a spy on
    `render._draw_sheet` for tests that check where text lands on the page."""
    from fallbackkit.generate import render
    drawn: list = []
    real = render._draw_sheet

    def spy(c, sheet, forms):
        drawn.append(sheet)
        return real(c, sheet, forms)

    monkeypatch.setattr(render, "_draw_sheet", spy)
    return drawn
