"""`fallbackkit simulate`: filled, damaged images of a printed PDF and a truth file that matches them."""
from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image, ImageSequence

from fallbackkit.cli import cli
from fallbackkit.errors import ExitCode
from fallbackkit.scan.engine import read_page
from fallbackkit.scan.simulate import render_pdf, simulate

from scan_engine_helpers import wrong_values


def _images(path):
    if path.suffix == ".pdf":
        return render_pdf(path, 200)
    with Image.open(path) as im:
        return [np.array(frame.convert("L")) for frame in ImageSequence.Iterator(im)]


def test_simulate_cli_writes_images_and_a_truth_the_reader_agrees_with(kit, ward_pack, tmp_path):
    out = tmp_path / "sim"
    result = CliRunner().invoke(cli, ["--kit", str(kit.path), "simulate", str(ward_pack.out_path), "--out", str(out),
                                      "--seed", "5", "--tier", "clean"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "43 pages" in result.output and "1 pages without a sheet code skipped" in result.output
    truth = json.loads((out / "truth.json").read_text())
    assert truth["skipped"] == [{"pdf_page": 1, "why": "no sheet code (a cover page?)"}]
    pages = [p for f in truth["files"] for p in f["pages"]]
    assert sorted(p["pdf_page"] for p in pages) == list(range(2, 45))
    assert len({p["sheet_id"] for p in pages}) == 43
    styles = {s for p in pages for t in p["fields"].values()
              for s in (t["style"] if isinstance(t["style"], list) else [t["style"]])}
    assert {"tick", "cross", "stroke", "writing", "empty"} <= styles
    geometry = {}
    from fallbackkit.generate import sheet_geometry
    kinds = set()
    for f in truth["files"]:
        path = out / f["file"]
        kinds.add(path.suffix)
        images = _images(path)
        assert len(images) == len(f["pages"])
        for img, page in zip(images, f["pages"]):
            geometry.setdefault(page["sheet_id"], sheet_geometry(kit, page["sheet_id"]))
            r = read_page(img, kit_id=kit.kit_id, secret=kit.secret, geometry_for=geometry.get)
            assert (r.status, r.sheet_id) == ("read", page["sheet_id"])
            assert wrong_values(r, page["fields"]) == []
    assert ".png" in kinds and ".tif" in kinds


def test_simulate_is_deterministic_by_seed_and_damages_by_tier(kit, blank_lab, tmp_path):
    a = simulate(kit, blank_lab.out_path, tmp_path / "a", seed=3, tier="mixed")
    b = simulate(kit, blank_lab.out_path, tmp_path / "b", seed=3, tier="mixed")
    assert a["pages"] == b["pages"] == 3
    ta = json.loads((tmp_path / "a" / "truth.json").read_text())
    tb = json.loads((tmp_path / "b" / "truth.json").read_text())
    assert ta["files"] == tb["files"]
    phone = simulate(kit, blank_lab.out_path, tmp_path / "p", seed=1, tier="phone", blank_every=0)
    assert phone["pages"] == 3
    tp = json.loads((tmp_path / "p" / "truth.json").read_text())
    for f in tp["files"]:
        with Image.open(tmp_path / "p" / f["file"]) as im:
            assert 2000 <= max(im.size) <= 3000 and f["file"].endswith(".jpg")


def test_simulate_refuses_what_it_cannot_use(kit, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(cli, ["--kit", str(kit.path), "simulate", str(tmp_path / "nope.pdf"), "--out",
                                  str(tmp_path / "o")])
    assert missing.exit_code == ExitCode.BAD_INPUT and "nope.pdf" in missing.output
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"%PDF-1.4 not really")
    bad = runner.invoke(cli, ["--kit", str(kit.path), "simulate", str(junk), "--out", str(tmp_path / "o")])
    assert bad.exit_code == ExitCode.BAD_INPUT and "junk.pdf" in bad.output


def test_simulated_vital_signs_are_what_a_ward_writes(kit, tmp_path):
    """The demo's values: a template's range is what is possible (SpO2 50-100 %), its middle clinically
    low (SpO2 62-80 %). Vital signs are written from a ward's typical values, by the observation's LOINC
    code the template gives; the digits are still the train split's (test_digits checks that)."""
    from fallbackkit.generate import print_patient
    mrn = kit.db.execute("SELECT mrn FROM patients LIMIT 1").fetchone()[0]
    printed = print_patient(kit, "vitals", mrn, tmp_path / "vitals.pdf", actor="tester")
    written: dict[str, list[float]] = {}
    pages = []
    for seed in range(3, 9):
        simulate(kit, printed.out_path, tmp_path / f"sim-{seed}", seed=seed, tier="clean", digits=True)
        truth = json.loads((tmp_path / f"sim-{seed}" / "truth.json").read_text())
        pages += [p for f in truth["files"] for p in f["pages"]]
    for page in pages:
        for name, t in page["fields"].items():
            if t.get("written") and name.split(".")[-1] in ("spo2", "pulse", "temperature", "resp_rate"):
                text = t["written"].strip()
                value = int(text) / 10 if name.endswith("temperature") else int(text)
                written.setdefault(name.split(".")[-1], []).append(value)
    assert {"spo2", "pulse", "temperature"} <= set(written), written
    assert all(92 <= v <= 99 for v in written["spo2"]), written["spo2"]
    assert all(60 <= v <= 100 for v in written["pulse"]), written["pulse"]
    assert all(36.0 <= v <= 38.5 for v in written["temperature"]), written["temperature"]
    assert all(12 <= v <= 22 for v in written.get("resp_rate", [])), written.get("resp_rate")
