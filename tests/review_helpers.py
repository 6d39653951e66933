"""Review-station test data: real printed sheets, marked by code, scanned by the real pipeline.

`build_scenario(kit, tmp)` prints ward 3B, renders pages as a scanner would, draws pen marks
(a clear tick, a faint half mark, handwriting), blanks one page's QR code, scans the same sheet twice
with different marks (a conflict), and runs the scan pipeline. Nothing is inserted by hand.
`seed_queue(kit, n)` inserts n synthetic review readings (for the queue benchmark and scale tests).
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fallbackkit.generate import print_ward, sheet_geometry
from fallbackkit.review.users import add_user

DPI = 150
PASSWORD = "correct horse battery"


def _px(v_mm: float) -> int:
    return int(round(v_mm * DPI / 25.4))


def tick(img: np.ndarray, box_mm: list[float]) -> None:
    """A firm pen cross in a box."""
    x, y, w, h = box_mm
    p0, p1 = (_px(x + 0.6), _px(y + 0.6)), (_px(x + w - 0.6), _px(y + h - 0.6))
    cv2.line(img, p0, p1, 0, 3)
    cv2.line(img, (p0[0], p1[1]), (p1[0], p0[1]), 0, 3)


def faint(img: np.ndarray, box_mm: list[float]) -> None:
    """A short light stroke: neither clearly ticked nor clearly empty."""
    x, y, w, h = box_mm
    cv2.line(img, (_px(x + 1.2), _px(y + h / 2)), (_px(x + w * 0.45), _px(y + h / 2)), 60, 2)


def scribble(img: np.ndarray, box_mm: list[float], text: str = "Dupont") -> None:
    """Handwriting the machine does not read: ink in a text box."""
    x, y, w, h = box_mm
    cv2.putText(img, text, (_px(x + 2), _px(y + h - 2)), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
                h * DPI / 25.4 / 40, 0, 2, cv2.LINE_AA)


def blank_qr(img: np.ndarray, qr_mm: list[float]) -> None:
    x, y, w, h = qr_mm
    img[_px(y) - 4:_px(y + h) + 4, _px(x) - 4:_px(x + w) + 4] = 255


def field(geometry: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in geometry["fields"] if f["name"] == name)


@dataclass
class Scenario:
    kit: Any
    pdf: Path
    sheets: list[dict[str, Any]]
    lab_sheet: str = ""                          # a lab request with marks, scanned twice
    quarantine_sheet: str = ""                   # the sheet whose QR was blanked
    files: list[Path] = dc_field(default_factory=list)
    fields: dict[str, Any] = dc_field(default_factory=dict)


def _write(img: np.ndarray, path: Path) -> Path:
    cv2.imwrite(str(path), img)
    return path


def build_scenario(kit, tmp: Path) -> Scenario:
    from conftest import render_pages
    from fallbackkit.scan.pipeline import scan_paths

    result = print_ward(kit, "3B", tmp / "ward-3B.pdf", actor="tester")
    sheets = list(result.sheets)
    # the printed pages (a double-sided pack's blank backs left out: nothing to scan on them)
    pages = [p for p in render_pages(result.out_path, dpi=DPI) if p.min() < 255]
    sc = Scenario(kit, result.out_path, sheets)
    cover = len(pages) - len(sheets)  # a ward pack starts with a cover page
    index = {s["sheet_id"]: i + cover for i, s in enumerate(sheets)}
    lab = next(s for s in sheets if s["template"] == "lab-request" and s["page"] == 1)
    sc.lab_sheet = lab["sheet_id"]
    g = sheet_geometry(kit, lab["sheet_id"])
    names = [f["name"] for f in g["fields"]]
    checkbox, text, choice = field(g, "fasting"), field(g, "diagnosis"), field(g, "priority")
    first = pages[index[lab["sheet_id"]]].copy()
    faint(first, checkbox["box_mm"])
    scribble(first, text["box_mm"])
    tick(first, choice["options"][0]["box_mm"])
    second = pages[index[lab["sheet_id"]]].copy()
    tick(second, choice["options"][1]["box_mm"])     # the other option: the captures disagree
    scribble(second, text["box_mm"])
    faint(second, checkbox["box_mm"])
    lost = next(s for s in sheets if s["template"] == "registration" and s["page"] == 1)
    sc.quarantine_sheet = lost["sheet_id"]
    third = pages[index[lost["sheet_id"]]].copy()
    blank_qr(third, sheet_geometry(kit, lost["sheet_id"])["qr_mm"])
    sc.files = [_write(first, tmp / "scan-1.png"), _write(second, tmp / "scan-2.png"),
                _write(third, tmp / "scan-3.png")]
    scan_paths(kit, sc.files, workers=1, progress=False)
    sc.fields = {"checkbox": checkbox["name"], "text": text["name"], "choice": choice["name"], "all": names}
    return sc


def add_people(kit) -> None:
    add_user(kit.db, "clara", "clerk", PASSWORD, "tester")
    add_user(kit.db, "sam", "supervisor", PASSWORD, "tester", lang="fr")


def audit_rows(kit, action_prefix: str) -> list[dict[str, Any]]:
    rows = kit.db.conn.execute("SELECT actor, action, object, before, after FROM audit WHERE action LIKE ?"
                               " ORDER BY id", [action_prefix + "%"]).fetchall()
    return [{"actor": r[0], "action": r[1], "object": r[2], "before": json.loads(r[3]) if r[3] else None,
             "after": json.loads(r[4]) if r[4] else None} for r in rows]


def seed_queue(kit, n: int, reviewed_fraction: float = 0.0) -> list[int]:
    """n synthetic readings waiting for review, 50 per synthetic sheet and capture (bench/scale only).

    The synthetic sheets copy the first printed sheet's form and layout under new ids, so that every
    capture is the only (latest) capture of its sheet, as after a real scan of many pages."""
    conn = kit.db.conn
    form = conn.execute("SELECT form_id, template, version, pages FROM forms LIMIT 1").fetchone()
    sheet = conn.execute("SELECT sheet_id, page, pages, layout_hash, batch_id, printed_at FROM sheets"
                         " WHERE form_id = ? ORDER BY page LIMIT 1", [form[0]]).fetchone()
    ids: list[int] = []
    with conn:
        conn.execute("INSERT OR IGNORE INTO input_files (sha256, size, kind, pages, status, first_path, started_at)"
                     " VALUES ('synthetic', 0, 'png', 1, 'done', 'synthetic.png', '2026-11-28T10:00:00')")
        for c in range((n + 49) // 50):
            sid = f"SYN{c:06d}"
            conn.execute("INSERT INTO sheets (sheet_id, form_id, template, version, page, pages, layout_hash,"
                         " batch_id, printed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [sid, form[0], form[1], form[2], sheet[1], sheet[2], sheet[3], sheet[4], sheet[5]])
            cur = conn.execute(
                "INSERT INTO captures (file_sha256, page_index, source, status, sheet_id, form_id, template, version,"
                " page, pages, captured_at) VALUES ('synthetic', ?, 'scan', 'read', ?, ?, ?, ?, ?, ?, '2026-11-28')",
                [c + 1, sid, form[0], form[1], form[2], sheet[1], form[3]])
            cap = cur.lastrowid
            for k in range(min(50, n - c * 50)):
                cur = conn.execute(
                    "INSERT INTO readings (capture_id, sheet_id, field, type, raw, value, confidence, status, reason,"
                    " ink) VALUES (?, ?, ?, 'checkbox', ?, 'false', 0.5, 'review', 'uncertain_mark', NULL)",
                    [cap, sid, f"synthetic.{k}", json.dumps({"fill": 0.2})])
                ids.append(cur.lastrowid)
        reviewed = ids[:int(len(ids) * reviewed_fraction)]
        conn.executemany("INSERT INTO reviews (reading_id, decision, value, actor, at) VALUES (?, 'confirm', 'false',"
                         " 'seed', '2026-11-28')", [(i,) for i in reviewed])
    return ids


class ServerThread:
    """The app served by waitress on 127.0.0.1 and a free port, in a background thread."""

    def __init__(self, app):
        from fallbackkit.review import make_server
        self.server = make_server(None, "127.0.0.1", 0, app=app)  # as `fallbackkit review` serves it
        self.port = self.server.effective_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        stop_waitress(self.server, self.thread)


def stop_waitress(server, thread: threading.Thread) -> None:
    """Stop a waitress server running in thread: let running requests finish, then close every
    socket from the server's own loop thread (the loop ends when none is left).

    The loop may run the closing before the wake-up byte is written (the trigger pipe is readable
    already, from a response's own wake-up), and then it has closed the pipe that byte was for: that
    is the server stopped, not an error (waitress appends the thunk, then writes, outside its lock)."""
    from waitress import wasyncore
    server.task_dispatcher.shutdown(timeout=5)
    closed = threading.Event()

    def close_all() -> None:
        wasyncore.close_all(server._map)
        closed.set()
    try:
        server.trigger.pull_trigger(close_all)
    except OSError:
        if not closed.wait(5):
            raise
    thread.join(timeout=5)


def scan_blank_registration(kit, tmp: Path, sex: str | None = "male") -> dict[str, Any]:
    """Print one blank registration, write in its name and birth-date boxes (scribbles the machine
    cannot read, so they wait for a person), tick a sex, scan it. Returns the downtime MRN, the
    sheet id and the reading ids of the identity fields."""
    from conftest import render_pages
    from fallbackkit.generate import print_blank
    from fallbackkit.scan.pipeline import scan_paths
    result = print_blank(kit, "registration", 1, tmp / "blank-registration.pdf", actor="tester")
    pages = render_pages(result.out_path, dpi=DPI)
    first = next(s for s in result.sheets if s["page"] == 1)
    g = sheet_geometry(kit, first["sheet_id"])
    img = pages[0].copy()
    for name in ("last_name", "first_name", "birth_date"):
        scribble(img, field(g, name)["box_mm"])
    if sex:
        tick(img, next(o for o in field(g, "sex")["options"] if o["value"] == sex)["box_mm"])
    scan_paths(kit, [_write(img, tmp / "blank-registration-1.png")], workers=1, progress=False)
    dt = kit.db.conn.execute("SELECT downtime_mrn FROM forms WHERE form_id = ?", [first["form_id"]]).fetchone()[0]
    readings = dict(kit.db.conn.execute("SELECT field, reading_id FROM readings WHERE sheet_id = ?",
                                        [first["sheet_id"]]).fetchall())
    return {"downtime_mrn": dt, "sheet_id": first["sheet_id"], "readings": readings}


def rescan_lab_sheet(kit, tmp: Path, sc: Scenario) -> int:
    """A third scan of the scenario's lab request with other marks: a firm tick in 'fasting', the
    third priority, the first specimen. Several fields of one sheet now disagree. Returns its capture id."""
    from conftest import render_pages
    from fallbackkit.scan.pipeline import scan_paths
    pages = [p for p in render_pages(sc.pdf, dpi=DPI) if p.min() < 255]  # no blank backs (double-sided)
    index = {s["sheet_id"]: i + len(pages) - len(sc.sheets) for i, s in enumerate(sc.sheets)}
    g = sheet_geometry(kit, sc.lab_sheet)
    img = pages[index[sc.lab_sheet]].copy()
    tick(img, field(g, "fasting")["box_mm"])
    tick(img, field(g, "priority")["options"][2]["box_mm"])
    tick(img, field(g, "specimen")["options"][0]["box_mm"])
    scribble(img, field(g, "diagnosis")["box_mm"])
    scan_paths(kit, [_write(img, tmp / "scan-lab-3.png")], workers=1, progress=False)
    return kit.db.conn.execute("SELECT MAX(capture_id) FROM captures WHERE sheet_id = ?", [sc.lab_sheet]).fetchone()[0]


CHROMIUM = "/usr/bin/chromium"  # Debian's; never `playwright install` (it downloads)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]


@contextmanager
def station_page(app, user: str | None = "clara"):
    """The station served for real (waitress) and a Chromium page on it, logged in as `user`
    (None: not logged in). Yields (page, problems): problems collects the page's JavaScript errors."""
    from playwright.sync_api import sync_playwright
    with ServerThread(app) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
            page = context.new_page()
            page.set_default_timeout(10_000)
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(str(e)))
            if user:
                page.goto("/login")
                page.fill("input[name=name]", user)
                page.fill("input[name=password]", PASSWORD)
                page.press("input[name=password]", "Enter")
                page.wait_for_selector("#start")
            yield page, problems
        finally:
            browser.close()
