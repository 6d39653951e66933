"""`fallbackkit simulate`: fill printed sheets with synthetic pen marks, damage them like a scanner,
photocopier or phone would, and write the images plus a truth file.

The printed PDF is rendered with pypdfium2; each page is identified by decoding its own QR code
(the same way a scan is), its geometry comes from the kit's registry, and fields are filled at
random with the mark styles of `marks.py`. truth.json says, per file and page, the sheet id and per
field the intended value, the style used and whether a person should be asked (ambiguous by design).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pypdfium2 as pdfium
from PIL import Image

from .. import payload as payload_mod
from ..errors import BadInput, PayloadError
from ..generate import sheet_geometry
from . import degrade as degrade_mod
from . import digits_synth
from .locate import find_codes
from .marks import BOX_STYLES, InkLayer, draw_box_mark, draw_handwriting
from .digits_synth import DigitWriter
from .read import HANDWRITTEN

RENDER_DPI = {"clean": 200, "office": 200, "hard": 200, "phone": 300}
CLEAR_STYLES = ("tick", "cross", "stroke")


def render_pdf(pdf_path: Path | str, dpi: float) -> list[np.ndarray]:
    pdf = pdfium.PdfDocument(str(pdf_path))
    try:
        pages = []
        for page in pdf:
            bitmap = page.render(scale=dpi / 72, grayscale=True)
            arr = bitmap.to_numpy()
            pages.append(np.ascontiguousarray(arr[:, :, 0] if arr.ndim == 3 else arr))
            page.close()
        return pages
    finally:
        pdf.close()


def identify(image: np.ndarray, kit_id: str, secret: bytes) -> payload_mod.SheetPayload | None:
    codes, _ = find_codes(image, lambda t: t.startswith(payload_mod.PREFIX + ":"))
    for c in codes:
        try:
            return payload_mod.verify(c.text, secret, kit_id)
        except PayloadError:
            continue
    return None


def page_transform(dpi: float) -> np.ndarray:
    s = dpi / 25.4
    return np.array([[s, 0, 0], [0, s, 0], [0, 0, 1]], float)


def _pick_style(rng: np.random.Generator, hard_cases: float, spilled: float = 0.0) -> str:
    if rng.random() < hard_cases:
        return str(rng.choice(["faint", "half_outside"]))
    # spilled marks are drawn only when asked for (the accuracy benchmark, tests): the same seed
    # fills a page as before otherwise (the golden scenarios of the tests depend on it)
    if spilled and rng.random() < spilled:
        return "spilled"
    return str(rng.choice(CLEAR_STYLES))


def fill_page(image: np.ndarray, geometry: dict, dpi: float, rng: np.random.Generator, *,
              blank: bool = False, fill: float = 0.6, hard_cases: float = 0.03,
              two_marks: float = 0.03, cancels: float = 0.05, writing: float = 0.4, spilled: float = 0.0,
              digits: DigitWriter | None = None) -> tuple[np.ndarray, dict[str, dict[str, Any]]]:
    """Fill the fields of one clean page; returns the marked image and the truth per field.
    digits: comb fields get plausible values in real handwritten digits (truth: `written`) instead
    of scribbles."""
    layer = InkLayer(image, page_transform(dpi))
    truth: dict[str, dict[str, Any]] = {}
    later: list[tuple[dict, str]] = []
    legend_rows: list[int] = []  # how many nurses signed this sheet's legend: drawn at its first field
    for f in geometry["fields"]:
        t = f["type"]
        entry: dict[str, Any] = {"type": t, "should_review": False}
        if t in HANDWRITTEN:
            if f.get("legend") and not legend_rows:  # (drawn here: pages without a legend keep their draws)
                legend_rows.append(1 + int(rng.integers(0, 3)))
            chance = _writing_chance(f["name"], truth, writing, legend_rows[0] if legend_rows else 0)
            ink = (not blank) and rng.random() < chance
            text = digits.text_for(f, rng) if ink and digits is not None and f.get("cells_mm") else ""
            if text.strip():
                later.append((f, text))
                entry["written"] = text
            elif ink:
                draw_handwriting(layer, f, rng)
            entry.update(value=None, ink=bool(ink), style=("digits" if text.strip() else "writing") if ink else "empty")
            entry["should_review"] = bool(ink)
        elif t == "checkbox":
            styles = []
            value = False
            if not blank and rng.random() < fill:
                style = "cancelled" if rng.random() < cancels else _pick_style(rng, hard_cases, spilled)
                draw_box_mark(layer, f["box_mm"], style, rng)
                styles.append(style)
                value = BOX_STYLES[style][0]
                entry["should_review"] = BOX_STYLES[style][1]
            entry.update(value=value, style=styles or ["empty"])
        elif t in ("choice", "multichoice"):
            options = f["options"]
            styles = ["empty"] * len(options)
            marked: list[str] = []
            review = False
            parts = f["name"].split(".")
            after_given = len(parts) == 3 and parts[2] == "effect"  # a PRN dose's effect: only once given
            if after_given and truth.get(f"{parts[0]}.{parts[1]}.given", {}).get("value") is not True:
                pass
            elif not blank and rng.random() < fill:
                if t == "choice":
                    k = int(rng.integers(0, len(options)))
                    picks = [k]
                    if len(options) > 1 and rng.random() < two_marks:
                        picks.append(int(rng.choice([i for i in range(len(options)) if i != k])))
                else:
                    n = int(rng.integers(1, min(4, len(options)) + 1))
                    picks = [int(i) for i in rng.choice(len(options), n, replace=False)]
                for i in picks:
                    styles[i] = _pick_style(rng, hard_cases, spilled)
                if t == "choice" and len(options) > 1 and rng.random() < cancels:
                    free = [i for i in range(len(options)) if styles[i] == "empty"]
                    if free:
                        styles[int(rng.choice(free))] = "cancelled"
                for i, style in enumerate(styles):
                    if style != "empty":
                        draw_box_mark(layer, options[i]["box_mm"], style, rng)
                        if BOX_STYLES[style][0]:
                            marked.append(options[i]["value"])
                        review = review or BOX_STYLES[style][1]
            if t == "choice":
                if len(marked) > 1:
                    value, review = None, True
                else:
                    value = marked[0] if marked else None
                    if marked and "cancelled" in styles:
                        review = True
            else:
                value = sorted(marked)
            entry.update(value=value, style=styles, should_review=review)
        else:
            continue
        truth[f["name"]] = entry
    marked = layer.apply()
    for f, text in later:
        digits.write(marked, page_transform(dpi), f, text, rng)
    return marked, truth


def _writing_chance(name: str, truth: dict[str, dict[str, Any]], writing: float, legend_rows: int) -> float:
    """How likely a nurse writes in this field, given what the page holds so far (fields come in
    layout order: a slot's marks before its writing): a held code only for a dose marked held, a
    PRN reason only for a dose given, the legend's first rows filled as a whole."""
    parts = name.split(".")
    if len(parts) == 2 and parts[0][:1] == "l" and parts[0][1:].isdigit():
        return 1.0 if int(parts[0][1:]) <= legend_rows else 0.0
    if len(parts) == 3:
        prefix, part = ".".join(parts[:2]), parts[2]
        status = truth.get(f"{prefix}.status", {}).get("value")
        given = truth.get(f"{prefix}.given", {}).get("value")
        if part == "held":
            return 0.9 if status == "held" else 0.0
        if part == "reason":
            return 0.8 if given is True else 0.0
    return writing


def _field_rects(f: dict) -> list[list[float]]:
    if "options" in f:
        return [o["box_mm"] for o in f["options"]]
    return [f["box_mm"]]


def fields_under(geometry: dict, rect_mm, min_mm: float = 1.0) -> list[str]:
    """Fields with a box (or a handwriting frame) under the axis-aligned rectangle rect_mm by at
    least min_mm both ways: what an occluder lying there hides."""
    x, y, w, h = rect_mm
    out = []
    for f in geometry["fields"]:
        for bx, by, bw, bh in _field_rects(f):
            if min(x + w, bx + bw) - max(x, bx) >= min_mm and min(y + h, by + bh) - max(y, by) >= min_mm:
                out.append(f["name"])
                break
    return out


def random_occluder(geometry: dict, rng: np.random.Generator, size_mm: tuple[float, float],
                    clear_mm: float = 4.0) -> list[float]:
    """A rectangle of size_mm over at least one field, clear of the code and the corner marks (so
    that the page is still identified and aligned: what lies over fields is the silent case)."""
    pw, ph = geometry["page_size_mm"]
    keep_clear = [geometry["qr_mm"], *geometry["marks_mm"].values()]
    w, h = size_mm
    for _ in range(400):
        f = geometry["fields"][int(rng.integers(0, len(geometry["fields"])))]
        bx, by, bw, bh = _field_rects(f)[int(rng.integers(0, len(_field_rects(f))))]
        x = float(np.clip(bx + bw / 2 - w * rng.uniform(0.1, 0.9), 0, pw - w))
        y = float(np.clip(by + bh / 2 - h * rng.uniform(0.1, 0.9), 0, ph - h))
        if all(x + w + clear_mm < kx or kx + kw + clear_mm < x or y + h + clear_mm < ky or ky + kh + clear_mm < y
               for kx, ky, kw, kh in keep_clear) and fields_under(geometry, [x, y, w, h]):
            return [round(x, 1), round(y, 1), w, h]
    raise ValueError("no place for the occluder clear of the code and the marks")


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_image(path: Path, img: np.ndarray) -> None:
    if path.suffix == ".png":
        _atomic_write(path, lambda t: Image.fromarray(img).save(t, format="PNG", compress_level=1))
    else:
        _atomic_write(path, lambda t: Image.fromarray(img).save(t, format="JPEG", quality=88))


def _write_tiff_g4(path: Path, imgs: list[np.ndarray]) -> None:
    bilevel = [Image.fromarray(np.where(i > 200, 255, 0).astype(np.uint8)).convert("1") for i in imgs]
    _atomic_write(path, lambda t: bilevel[0].save(t, format="TIFF", compression="group4", save_all=True,
                                                  append_images=bilevel[1:], dpi=(200, 200)))


def _write_pdf(path: Path, imgs: list[np.ndarray], dpi: float) -> None:
    pages = [Image.fromarray(i) for i in imgs]
    _atomic_write(path, lambda t: pages[0].save(t, format="PDF", save_all=True, append_images=pages[1:],
                                                resolution=dpi))


# What a ward writes for a vital sign, by the LOINC code of the observation the template says the
# field is: a template's `range:` is what is possible (SpO2 50-100 %), and its middle is clinically
# low (SpO2 62-80 %), which a demo should not show. Adult ward values, most patients stable.
TYPICAL_BY_LOINC: dict[str, tuple[float, float]] = {
    "59408-5": (92, 99),      # SpO2 %
    "8867-4": (60, 100),      # heart rate /min
    "8310-5": (36.0, 38.5),   # body temperature °C
    "9279-1": (12, 22),       # respiratory rate /min
    "8480-6": (100, 150),     # systolic blood pressure mmHg
    "8462-4": (60, 95),       # diastolic blood pressure mmHg
    "72514-3": (0, 6),        # pain 0-10
    "29463-7": (50, 100),     # body weight kg
    "8302-2": (150, 190),     # body height cm
}


class WardDigitWriter(DigitWriter):
    """The DigitWriter (digits_synth: real handwritten digits of the train split) writing clinically
    plausible values into the fields whose observation has a typical ward range (TYPICAL_BY_LOINC);
    every other field as DigitWriter writes it. One random draw per value, as DigitWriter's, so that
    the rest of a simulated page (its marks, its damage) is drawn as before."""

    def __init__(self, ranges: dict[str, tuple[float, float]], typical: dict[str, tuple[float, float]],
                 **kwargs: Any) -> None:
        super().__init__(ranges, **kwargs)
        self.typical = typical

    def text_for(self, field: dict, rng: np.random.Generator) -> str:
        typical = self.typical.get(field["name"]) or self.typical.get(field["name"].split(".")[-1])
        if field["type"] != "number" or typical is None:
            return super().text_for(field, rng)
        ints, decs = int(field.get("digits") or 0), int(field.get("decimals") or 0)
        lo, hi = typical
        v = round(float(rng.uniform(lo, hi)), decs) if decs else float(round(rng.uniform(lo, hi)))
        whole = str(int(v))
        if len(whole) > ints or len(field.get("cells_mm") or []) != ints + decs:
            return ""
        frac = str(round((v - int(v)) * 10 ** decs)).rjust(decs, "0")[:decs] if decs else ""
        return whole.rjust(ints) + frac


def digit_writer(kit) -> DigitWriter | None:
    """Real handwritten digits for the comb fields, with the kit's templates' plausible ranges and,
    for vital signs, a ward's typical values (WardDigitWriter); None (scribbles) when the digit data
    of the source tree is not there (an installed package)."""
    from ..templates.model import load_templates
    from .suggest import field_specs
    if not digits_synth.DATA_PATH.is_file():
        return None
    ranges: dict[str, tuple[float, float]] = {}
    typical: dict[str, tuple[float, float]] = {}
    for template in load_templates(kit.templates_dir).values():
        for name, spec in field_specs(template).items():
            if getattr(spec, "range", None):
                ranges[name] = tuple(spec.range)
            loinc = getattr(getattr(spec, "observation", None), "loinc", None)
            if loinc in TYPICAL_BY_LOINC:
                lo, hi = TYPICAL_BY_LOINC[loinc]
                if getattr(spec, "range", None):  # never outside what the template allows
                    lo, hi = max(lo, spec.range[0]), min(hi, spec.range[1])
                typical[name] = (lo, hi)
    return WardDigitWriter(ranges, typical)


def simulate(kit, pdf_path: Path | str, out_dir: Path | str, *, seed: int = 0, tier: str = "mixed",
             blank_every: int = 10, digits: bool = False) -> dict[str, Any]:
    """Fill and damage every sheet of a printed PDF; write images and truth.json into out_dir.
    digits: write plausible values in real handwritten digits (train split) into comb fields, so that
    the scans get digit suggestions (else scribbles)."""
    if tier not in (*degrade_mod.TIERS, "mixed"):
        raise BadInput(f"unknown tier {tier!r}", hint="use clean, office, hard, phone or mixed")
    pdf_path, out_dir = Path(pdf_path), Path(out_dir)
    if not pdf_path.is_file():
        raise BadInput(f"{pdf_path}: no such PDF")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tiers = list(degrade_mod.TIERS) if tier == "mixed" else [tier]
    needed = {RENDER_DPI[t] for t in tiers}
    try:
        renders = {dpi: render_pdf(pdf_path, dpi) for dpi in sorted(needed)}
    except pdfium.PdfiumError as exc:
        raise BadInput(f"{pdf_path}: cannot read this PDF ({exc})") from exc
    low = renders[min(renders)]
    writer = digit_writer(kit) if digits else None
    pages: list[dict[str, Any]] = []
    skipped = []
    for index, img in enumerate(low):
        sp = identify(img, kit.kit_id, kit.secret)
        if sp is None:
            skipped.append({"pdf_page": index + 1, "why": "no sheet code (a cover page?)"})
            continue
        geometry = sheet_geometry(kit, sp.sheet_id)
        page_tier = tiers[int(rng.integers(0, len(tiers)))] if tier == "mixed" else tier
        dpi = RENDER_DPI[page_tier]
        clean = renders[dpi][index]
        blank = blank_every > 0 and rng.random() < 1.0 / blank_every
        marked, truth = fill_page(clean, geometry, dpi, rng, blank=blank, digits=writer)
        damaged = degrade_mod.degrade(marked, page_tier, rng, src_dpi=dpi)
        pages.append({"pdf_page": index + 1, "sheet_id": sp.sheet_id, "tier": page_tier, "blank": blank,
                      "fields": truth, "image": damaged, "dpi": dpi})
    files = _write_files(out_dir, pages, rng)
    truth_doc = {"source": str(pdf_path), "seed": seed, "tier": tier, "files": files, "skipped": skipped}
    _atomic_write(out_dir / "truth.json", lambda t: Path(t).write_text(json.dumps(truth_doc, indent=1)))
    written = sum(1 for p in pages for t in p["fields"].values() if t.get("written"))
    return {"pages": len(pages), "files": len(files), "skipped": len(skipped), "out": str(out_dir),
            "digit_fields": written}


def _write_files(out_dir: Path, pages: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Mostly one image per page (PNG for clean pages, JPEG otherwise); some clean/office pages are
    grouped into a multi-page TIFF G4 or a multi-page PDF, as office scanners write them."""
    files = []
    i = 0
    n = 0
    while i < len(pages):
        p = pages[i]
        group = [p]
        kind = "single"
        if p["tier"] in ("clean", "office") and rng.random() < 0.25:
            kind = "tiff" if p["tier"] == "clean" else "pdf"
            j = i + 1
            while j < len(pages) and len(group) < 3 and pages[j]["tier"] == p["tier"]:
                group.append(pages[j])
                j += 1
        n += 1
        if kind == "tiff":
            name = f"scan-{n:04d}.tif"
            _write_tiff_g4(out_dir / name, [g["image"] for g in group])
        elif kind == "pdf":
            name = f"scan-{n:04d}.pdf"
            _write_pdf(out_dir / name, [g["image"] for g in group], group[0]["dpi"])
        else:
            name = f"scan-{n:04d}.{'png' if p['tier'] == 'clean' else 'jpg'}"
            _write_image(out_dir / name, p["image"])
        files.append({"file": name, "pages": [
            {"page": k + 1, "pdf_page": g["pdf_page"], "sheet_id": g["sheet_id"], "tier": g["tier"],
             "blank": g["blank"], "bilevel": kind == "tiff", "fields": g["fields"]} for k, g in enumerate(group)]})
        i += len(group)
    return files


__all__ = ["simulate", "fill_page", "render_pdf", "identify", "page_transform", "fields_under", "random_occluder"]
