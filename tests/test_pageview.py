"""Page images made when someone looks at them (scan/pageview.py), from the archived original.

Real files (a printed ward pack rendered and written as JPEG, TIFF G4, scanner PDF and the vector
PDF itself), a real SQLite kit, the station through its HTTP app and in Chromium, a real FHIR
export, a real backup and restore. The page image made on demand is compared pixel for pixel with
what the scan stored before (tests/pageview_reference.py, the old code frozen)."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pageview_reference as ref
from fallbackkit.export import backup, export_fhir, restore
from fallbackkit.generate import print_ward, sheet_geometry
from fallbackkit.scan import engine, pageview
from fallbackkit.scan.ingest import load_page
from fallbackkit.scan.pageview import PageImageUnavailable, page_image_png
from fallbackkit.scan.pipeline import scan_paths
from fallbackkit.store.decisions import record_review
from kit_helpers import census_kit
from pdf_helpers import render_pages
from review_helpers import CHROMIUM, PASSWORD, add_people, station_page
from scan_pipeline_helpers import white_out, write_jpeg, write_scanner_pdf, write_tiff_g4

DPI = 200


def _pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        assert im.mode == "L"
        return np.asarray(im)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """Ward 3B (one bed) printed one-sided and scanned back as a scanner JPEG per page, a TIFF G4
    at 300 dpi, a scanner PDF, the printed PDF itself, and a page whose code was torn off (PNG:
    quarantined). Returns (kit, {input path: kind}, tmp)."""
    tmp = tmp_path_factory.mktemp("pageview")
    kit = census_kit(tmp, wards={"3B": 1})
    pack = print_ward(kit, "3B", tmp / "w.pdf", actor="t", one_sided=True)
    pages = render_pages(pack.out_path, dpi=DPI)
    cover = len(pages) - len(pack.sheets)
    index = {s["sheet_id"]: i + cover for i, s in enumerate(pack.sheets)}
    lab = next(s for s in pack.sheets if s["template"] == "lab-request")
    vitals = next(s for s in pack.sheets if s["template"] == "vitals")
    mar = next(s for s in pack.sheets if s["template"] == "mar")
    reg = next(s for s in pack.sheets if s["template"] == "registration")
    inbox = tmp / "inbox"
    inbox.mkdir()
    write_jpeg(inbox / "vitals.jpg", pages[index[vitals["sheet_id"]]])
    write_tiff_g4(inbox / "lab.tif", [render_pages(pack.out_path, dpi=300)[index[lab["sheet_id"]]]], dpi=300)
    write_scanner_pdf(inbox / "mar.pdf", [pages[index[mar["sheet_id"]]]])
    torn = white_out(pages[index[reg["sheet_id"]]], sheet_geometry(kit, reg["sheet_id"])["qr_mm"], DPI)
    Image.fromarray(torn).save(inbox / "torn.png", dpi=(DPI, DPI))
    shutil.copy(pack.out_path, inbox / "printed.pdf")
    summary = scan_paths(kit, [inbox], workers=0, progress=False)
    assert summary.pages_quarantined >= 1 and summary.pages_read >= 4
    yield kit, inbox, tmp, vitals
    kit.close()


def _captures(kit) -> list[dict]:
    rows = kit.db.conn.execute(
        "SELECT c.capture_id, c.status, c.sheet_id, c.page_index, c.transform, c.image_path, f.first_path, f.archive_path"
        " FROM captures c JOIN input_files f ON f.sha256 = c.file_sha256 ORDER BY c.capture_id").fetchall()
    return [dict(zip(["capture_id", "status", "sheet_id", "page_index", "transform", "image_path", "first_path",
                      "archive_path"], r)) for r in rows]


def _old_stored_image(kit, inbox: Path, cap: dict) -> np.ndarray:
    """What the scan stored before, by the old code (frozen), from the input file as scanned."""
    page = load_page(inbox / Path(cap["first_path"]).name, cap["page_index"])
    if cap["transform"]:
        image = ref.page_image(page.image, np.array(json.loads(cap["transform"])), sheet_geometry(kit, cap["sheet_id"]))
    else:
        image = ref.preview(page.image, page.dpi)
    return ref.viewing_copy(image)


def test_a_page_view_is_the_very_page_image_the_scan_stored_before(scanned):
    """Read pages of every input kind and a quarantined page: nothing under pages/ after the scan;
    the first view makes the image from the archived original, the same pixels the old scan
    stored (warped with the stored transform, or the preview of a page never located), and caches
    it where the capture says, content-addressed."""
    kit, inbox, _, _ = scanned
    caps = _captures(kit)
    assert not list((kit.path / "pages").rglob("*.png")), "the scan writes no page image"
    kinds = {Path(c["first_path"]).suffix for c in caps if c["status"] == "read"}
    assert kinds >= {".jpg", ".tif", ".pdf"}
    assert any(c["status"] == "quarantined" for c in caps)
    for cap in caps:
        sha = Path(cap["archive_path"]).stem
        assert cap["image_path"] == f"pages/{sha[:2]}/{sha}-p{cap['page_index']}.png"
        png = page_image_png(kit.db.conn, kit.path, cap["capture_id"])
        assert np.array_equal(_pixels(png), _old_stored_image(kit, inbox, cap)), cap
        assert (kit.path / cap["image_path"]).read_bytes() == png
    assert not list((kit.path / "pages").rglob("*.tmp"))


def test_the_second_view_is_a_file_read_and_a_kit_scanned_before_keeps_its_images(scanned, monkeypatch):
    kit, _, _, _ = scanned
    cap = next(c for c in _captures(kit) if c["status"] == "read")
    first = page_image_png(kit.db.conn, kit.path, cap["capture_id"])

    def no_render(*a, **k):
        raise AssertionError("rendered again")
    monkeypatch.setattr(pageview, "render", no_render)
    assert page_image_png(kit.db.conn, kit.path, cap["capture_id"]) == first
    # a kit whose scan wrote the page images: the file is what is shown, as it is
    cached = kit.path / cap["image_path"]
    saved = cached.read_bytes()
    try:
        other = io.BytesIO()
        Image.fromarray(np.full((20, 10), 77, np.uint8)).save(other, format="PNG")
        cached.write_bytes(other.getvalue())
        assert page_image_png(kit.db.conn, kit.path, cap["capture_id"]) == other.getvalue()
        from fallbackkit.review.queue import page_view_size
        assert page_view_size(kit.db.conn, kit.path, cap["capture_id"]) == (10, 20)
    finally:
        cached.write_bytes(saved)


def test_a_kit_that_cannot_be_written_still_shows_its_pages(scanned, monkeypatch, caplog):
    """Read-only media or a full disk: the page image is made and shown, not cached, said once."""
    import errno
    kit, inbox, _, _ = scanned
    caps = [c for c in _captures(kit) if c["status"] == "read"][:2]
    for cap in caps:
        (kit.path / cap["image_path"]).unlink(missing_ok=True)

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(pageview.os, "open", read_only)
    pageview._NOT_CACHED.clear()
    with caplog.at_level("DEBUG", logger="fallbackkit"):
        for cap in caps:
            png = page_image_png(kit.db.conn, kit.path, cap["capture_id"])
            assert np.array_equal(_pixels(png), _old_stored_image(kit, inbox, cap))
            assert not (kit.path / cap["image_path"]).exists()
    warned = [r for r in caplog.records if r.levelname == "WARNING" and "not cached" in r.getMessage()]
    assert len(warned) == 1 and "Read-only" in warned[0].getMessage()
    assert not list((kit.path / "pages").rglob("*.tmp"))


def test_the_page_size_is_known_before_the_image_is_made(scanned):
    """The station draws its field outlines over the page before the browser asks for the image."""
    from fallbackkit.review.queue import page_view_size
    kit, _, _, _ = scanned
    for cap in _captures(kit):
        cached = kit.path / cap["image_path"]
        cached.unlink(missing_ok=True)
        size = page_view_size(kit.db.conn, kit.path, cap["capture_id"])
        assert not cached.exists()
        with Image.open(io.BytesIO(page_image_png(kit.db.conn, kit.path, cap["capture_id"]))) as im:
            assert size == im.size, cap


def _login(client, name: str = "clara"):
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": token})


@pytest.fixture(scope="module")
def station_kit(tmp_path_factory):
    """A kit of its own for the station tests, which take archive files away."""
    tmp = tmp_path_factory.mktemp("pageview-station")
    kit = census_kit(tmp, wards={"3B": 1})
    pack = print_ward(kit, "3B", tmp / "w.pdf", actor="t", one_sided=True)
    pages = render_pages(pack.out_path, dpi=DPI)
    cover = len(pages) - len(pack.sheets)
    lab = next(i for i, s in enumerate(pack.sheets) if s["template"] == "lab-request")
    reg = next(i for i, s in enumerate(pack.sheets) if s["template"] == "registration")
    torn = white_out(pages[cover + reg], sheet_geometry(kit, pack.sheets[reg]["sheet_id"])["qr_mm"], DPI)
    inbox = tmp / "inbox"
    inbox.mkdir()
    write_jpeg(inbox / "lab.jpg", pages[cover + lab])
    write_jpeg(inbox / "torn.jpg", torn)
    scan_paths(kit, [inbox], workers=0, progress=False)
    add_people(kit)
    yield kit
    kit.close()


def test_the_station_shows_read_and_quarantined_pages_and_says_when_the_original_is_gone(station_kit):
    from fallbackkit.review import create_app
    kit = station_kit
    caps = _captures(kit)
    read = next(c for c in caps if c["status"] == "read")
    quarantined = next(c for c in caps if c["status"] == "quarantined")
    client = create_app(kit.path).test_client()
    _login(client)
    for cap in (read, quarantined):
        resp = client.get(f"/img/page/{cap['capture_id']}")
        assert resp.status_code == 200 and resp.mimetype == "image/png"
        assert resp.data == (kit.path / cap["image_path"]).read_bytes()
    page = client.get(f"/page/{read['capture_id']}").get_data(as_text=True)
    assert "<polygon" in page and "image-problem" not in page
    assert "image-problem" not in client.get("/quarantine").get_data(as_text=True)

    # the original taken from the archive and the cached copies gone: said on the screens, a 404
    # whose text names the file and what to do; the station goes on
    archive = kit.path / quarantined["archive_path"]
    kept = archive.read_bytes()
    try:
        archive.unlink()
        (kit.path / quarantined["image_path"]).unlink()
        with pytest.raises(PageImageUnavailable, match=re.escape(quarantined["archive_path"]) + " is missing") as err:
            page_image_png(kit.db.conn, kit.path, quarantined["capture_id"])
        assert "check --archive" in str(err.value)
        resp = client.get(f"/img/page/{quarantined['capture_id']}")
        assert resp.status_code == 404 and quarantined["archive_path"] in resp.get_data(as_text=True)
        html = client.get("/quarantine").get_data(as_text=True)
        assert "image-problem" in html and quarantined["archive_path"] in html
        # damaged (a truncated JPEG): found when the image is made, said the same way
        archive.write_bytes(kept[:200])
        with pytest.raises(PageImageUnavailable, match="cannot be decoded"):
            page_image_png(kit.db.conn, kit.path, quarantined["capture_id"])
        resp = client.get(f"/img/page/{quarantined['capture_id']}")
        assert resp.status_code == 404 and "cannot be decoded" in resp.get_data(as_text=True)
        assert not (kit.path / quarantined["image_path"]).exists(), "nothing cached from a damaged original"
        assert client.get(f"/img/page/{read['capture_id']}").status_code == 200
    finally:
        archive.write_bytes(kept)
    assert client.get(f"/img/page/{quarantined['capture_id']}").status_code == 200


def test_a_quarantined_page_a_clerk_identified_is_shown_as_that_sheet(station_kit, tmp_path):
    """Assigned to its sheet, the torn page is read by its corner marks: its view is that sheet's
    page warped with the new capture's transform (the old code's page image), at its own path."""
    from fallbackkit.scan.pipeline import assign_quarantined
    from fallbackkit.store.quarantine import list_quarantine
    kit = station_kit
    item = next(i for i in list_quarantine(kit.db.conn) if i.assigned_sheet_id is None)
    sheet = kit.db.conn.execute("SELECT sheet_id FROM sheets s JOIN forms f USING (form_id)"
                                " WHERE s.template = 'registration' AND s.page = 1").fetchone()[0]
    cid = assign_quarantined(kit, item.quarantine_id, sheet, "clara")
    rel, transform = kit.db.conn.execute("SELECT image_path, transform FROM captures WHERE capture_id = ?",
                                         [cid]).fetchone()
    assert rel == f"pages/{item.sha256[:2]}/{item.sha256}-p{item.page_index}-assigned.png"
    page = load_page(kit.path / item.archive_path, item.page_index).image
    want = ref.viewing_copy(ref.page_image(page, np.array(json.loads(transform)), sheet_geometry(kit, sheet)))
    assert np.array_equal(_pixels(page_image_png(kit.db.conn, kit.path, cid)), want)


def test_a_path_outside_pages_is_never_written(station_kit):
    """A store row naming another file of the kit (secret.key): never read, never overwritten."""
    kit = station_kit
    cap = next(c for c in _captures(kit) if c["status"] == "read")
    secret = (kit.path / "secret.key").read_bytes()
    for stored in ("secret.key", "pages/../secret.key", str(kit.path / "secret.key"), "pages/x/../../secret.key"):
        with kit.db.conn:
            kit.db.conn.execute("UPDATE captures SET image_path = ? WHERE capture_id = ?", [stored, cap["capture_id"]])
        try:
            with pytest.raises(Exception) as err:
                page_image_png(kit.db.conn, kit.path, cap["capture_id"])
            assert "not found" in str(err.value) or "no page image" in str(err.value)
        finally:
            with kit.db.conn:
                kit.db.conn.execute("UPDATE captures SET image_path = ? WHERE capture_id = ?",
                                    [cap["image_path"], cap["capture_id"]])
    assert (kit.path / "secret.key").read_bytes() == secret


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium: sudo apt-get install chromium")
def test_the_page_view_in_chromium_shows_the_image_made_on_demand(station_kit):
    from fallbackkit.review import create_app
    kit = station_kit
    caps = _captures(kit)
    read = next(c for c in caps if c["status"] == "read")
    for cap in caps:
        (kit.path / cap["image_path"]).unlink(missing_ok=True)
    with station_page(create_app(kit.path), None) as (page, problems):
        page.goto("/login")
        page.fill("input[name=name]", "clara")
        page.fill("input[name=password]", PASSWORD)
        page.press("input[name=password]", "Enter")
        page.wait_for_url(lambda url: "/login" not in url)
        page.goto(f"/page/{read['capture_id']}")
        href = page.locator("#overlay image").get_attribute("href")
        loaded = page.evaluate("""async (href) => { const img = new Image(); img.src = href;
            await img.decode(); return [img.naturalWidth, img.naturalHeight]; }""", href)
        assert loaded == [827, 1169]
        page.goto("/quarantine")
        page.wait_for_function("() => [...document.querySelectorAll('.qimg img')].every(i => i.complete && i.naturalWidth > 0)")
        assert problems == []
    from fallbackkit.store.quarantine import list_quarantine
    shown = [read["image_path"]] + [i.image_path for i in list_quarantine(kit.db.conn) if i.assigned_sheet_id is None]
    assert all((kit.path / rel).is_file() for rel in shown)


def _transcribed_vitals(kit, sheet_id: str) -> int:
    """The scanned vitals page's first column filled in by a clerk (the paper was blank), on both
    its captures (the JPEG and the printed PDF's page). Returns the JPEG's capture."""
    from export_helpers import VITALS_C1
    for cid, in kit.db.conn.execute("SELECT capture_id FROM captures WHERE sheet_id = ? AND status = 'read'",
                                    [sheet_id]).fetchall():
        for name, rid, rtype in kit.db.conn.execute(
                "SELECT field, reading_id, type FROM readings WHERE capture_id = ?", [cid]).fetchall():
            if name in VITALS_C1:
                record_review(kit.db.conn, rid, "correct" if rtype in ("choice", "checkbox") else "transcribe",
                              VITALS_C1[name], "clerk1")
    return kit.db.conn.execute("SELECT c.capture_id FROM captures c JOIN input_files f ON f.sha256 = c.file_sha256"
                               " WHERE c.sheet_id = ? AND c.status = 'read' AND f.first_path LIKE '%.jpg'",
                               [sheet_id]).fetchone()[0]


def _documents(result) -> dict[str, dict]:
    """The DocumentReferences of an export by the scanned file they name (sha256 prefix), with the
    Binary each points to."""
    entries = [e["resource"] for f in result["files"] for e in json.loads(Path(f).read_text())["entry"]]
    binaries = {f"urn:uuid:{r['id']}": r for r in entries if r["resourceType"] == "Binary"}
    docs = {}
    for r in entries:
        if r["resourceType"] == "DocumentReference":
            att = r["content"][0]["attachment"]
            sha = re.search(r"sha256:([0-9a-f]{16})", r["description"]).group(1)
            docs[sha] = {"attachment": att, "binary": binaries.get(att.get("url"))}
    return docs


def test_the_fhir_export_makes_the_page_images_and_goes_on_without_a_lost_original(scanned):
    kit, _, tmp, vitals = scanned
    cid = _transcribed_vitals(kit, vitals["sheet_id"])
    rel, archive = kit.db.conn.execute("SELECT c.image_path, f.archive_path FROM captures c JOIN input_files f"
                                       " ON f.sha256 = c.file_sha256 WHERE c.capture_id = ?", [cid]).fetchone()
    (kit.path / rel).unlink(missing_ok=True)
    binary = export_fhir(kit, tmp / "binary")
    assert binary["items_exported"] >= 1, binary
    image = (kit.path / rel).read_bytes()  # made by the export, cached
    sha = Path(archive).stem[:16]
    att = _documents(binary)[sha]["attachment"]
    assert att["contentType"] == "image/png" and att["size"] == len(image)
    assert att["hash"] == base64.b64encode(hashlib.sha1(image).digest()).decode()
    assert base64.b64decode(_documents(binary)[sha]["binary"]["data"]) == image
    assert binary["page_image_problems"] == []
    inline = export_fhir(kit, tmp / "inline", page_images="inline")
    assert base64.b64decode(_documents(inline)[sha]["attachment"]["data"]) == image

    # the original lost and nothing cached: the export goes on, the page goes without its image,
    # the result says which and why; no kit path in the bundle
    kept = (kit.path / archive).read_bytes()
    try:
        (kit.path / archive).unlink()
        (kit.path / rel).unlink()
        lost = export_fhir(kit, tmp / "lost")
        [problem] = lost["page_image_problems"]
        assert problem["capture_id"] == cid and archive in problem["problem"]
        texts = [Path(f).read_text() for f in lost["files"]]
        att = _documents(lost)[sha]["attachment"]
        assert "no page image" in att["title"] and "data" not in att and "url" not in att
        assert not any("archive/" in t for t in texts)
        assert lost["items_exported"] == binary["items_exported"]
        from click.testing import CliRunner

        from fallbackkit.cli import cli
        run = CliRunner().invoke(cli, ["--kit", str(kit.path), "export", "--format", "fhir", "--out",
                                       str(tmp / "lost-cli")])
        assert run.exit_code == 0, run.output
        assert "1 scanned pages exported without their page image" in run.output and archive in run.output
    finally:
        (kit.path / archive).write_bytes(kept)


def test_a_backup_and_restore_round_trip_shows_the_same_pages(scanned, tmp_path):
    """A backup holds the store; the page images are made again from the archive after a restore
    (the cache may be gone), the same bytes."""
    kit, _, _, _ = scanned
    caps = _captures(kit)
    before = {c["capture_id"]: page_image_png(kit.db.conn, kit.path, c["capture_id"]) for c in caps}
    backup(kit, tmp_path / "b.sqlite", "it")
    shutil.rmtree(kit.path / "pages")
    (kit.path / "pages").mkdir(mode=0o700)
    restore(kit, tmp_path / "b.sqlite", "it")
    after = {c["capture_id"]: page_image_png(kit.db.conn, kit.path, c["capture_id"]) for c in _captures(kit)}
    assert after == before


def test_the_dark_page_share_sampled_on_the_original_means_what_it_meant(scanned):
    """page_dark: the share of the page darker than half-way between ink and paper, now sampled on
    the original (every 3rd point of the page image's grid) instead of the whole warped page image:
    within half a point of the old figure on pages from clean to mostly shadowed, and the same
    decision either side of DARK_PAGE."""
    kit, inbox, _, _ = scanned
    cap = next(c for c in _captures(kit) if c["status"] == "read" and c["first_path"].endswith(".jpg"))
    image = load_page(inbox / "vitals.jpg", 1).image
    hmat = np.array(json.loads(cap["transform"]))
    geometry = sheet_geometry(kit, cap["sheet_id"])
    h = image.shape[0]
    for share in (0.0, 0.1, 0.2, 0.3, 0.33, 0.37, 0.45, 0.6):
        shadowed = image.copy()
        shadowed[:int(h * share)] = 30  # a lid shadow over the top of the sheet
        old = ref.dark_fraction(shadowed, hmat, geometry, 128)
        new = engine.dark_fraction(shadowed, hmat, geometry, 128)
        assert abs(new - old) < 0.005, (share, old, new)
        assert (new > engine.DARK_PAGE) == (old > engine.DARK_PAGE) or abs(old - engine.DARK_PAGE) < 0.005
    # and the reader routes a shadowed page to review as before
    shadowed = image.copy()
    shadowed[:int(h * 0.5)] = 30
    result = engine.read_page(shadowed, kit_id=kit.kit_id, secret=kit.secret,
                              geometry_for=lambda s: sheet_geometry(kit, s))
    if result.status == "read":
        assert result.quality["page_review"].startswith("page mostly dark")
