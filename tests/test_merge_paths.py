"""`merge` takes no file path from another store on trust (issue 9 item 6): a crafted station store
(real SQLite, edited as an attacker would) is refused with the row named, and nothing is written,
neither outside the kit nor inside it."""
from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from export_helpers import table_dump
from fallbackkit.cli import cli
from fallbackkit.errors import BadInput
from fallbackkit.generate import print_ward
from fallbackkit.reconcile import merge_store
from kit_helpers import census_kit
from reconcile_helpers import fake_scan, forms_of



def _station(tmp_path: Path):
    kit = census_kit(tmp_path / "a")
    print_ward(kit, "3B", tmp_path / "ward.pdf", actor="t")
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    station = tmp_path / "b" / "c" / "station"
    shutil.copytree(kit.path, station)
    return kit, station


def _craft(station: Path, sql: str, params: list) -> None:
    conn = sqlite3.connect(station / "store.sqlite")
    with conn:
        conn.execute(sql, params)
    conn.close()


def _scan_at_station(station: Path, tag: str) -> tuple[int, str]:
    from fallbackkit.store import open_kit
    other = open_kit(station)
    lab = forms_of(other, "lab-request")[0]
    cid = fake_scan(other, lab, {"tests": ["cbc"], "collected_at": "x"}, tag=tag)
    sha = other.db.conn.execute("SELECT file_sha256 FROM captures WHERE capture_id = ?", [cid]).fetchone()[0]
    other.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    other.close()
    return cid, sha


@pytest.mark.parametrize("column, path", [
    ("image_path", "../../escaped/x"),
    ("image_path", "ABSOLUTE"),
    ("image_path", "pages/00/../../../../escaped/x.png"),
    ("crop_path", "crops/../../../escaped/x"),
    ("archive_path", "archive/../../../escaped/x.pdf"),
])
def test_merge_refuses_paths_outside_the_kit_and_writes_nothing(tmp_path, column, path):
    kit, station = _station(tmp_path)
    cid, sha = _scan_at_station(station, "crafted")
    if path == "ABSOLUTE":
        path = str(tmp_path / "escaped" / "absolute.png")
    if column == "image_path":
        _craft(station, "UPDATE captures SET image_path = ? WHERE capture_id = ?", [path, cid])
        row = f"capture {cid}"
    elif column == "crop_path":
        rid = sqlite3.connect(station / "store.sqlite").execute(
            "SELECT MIN(reading_id) FROM readings WHERE capture_id = ?", [cid]).fetchone()[0]
        _craft(station, "UPDATE readings SET crop_path = ? WHERE reading_id = ?", [path, rid])
        row = f"reading {rid}"
    else:
        _craft(station, "UPDATE input_files SET archive_path = ? WHERE sha256 = ?", [path, sha])
        row = f"input file {sha}"
    # the file the crafted path points at, seen from the station: the old merge copied it out
    src = (station / path) if not path.startswith("/") else Path(path)
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(b"not a page")
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = table_dump(kit.store_path)
    files_before = sorted(p.relative_to(kit.path) for p in kit.path.rglob("*") if "store.sqlite" not in p.name)

    result = CliRunner().invoke(cli, ["--kit", str(kit.path), "--user", "it", "merge", str(station)])
    assert result.exit_code == 4, result.output
    assert row in result.output and repr(path) in result.output and "nothing was merged" in result.output

    if not path.startswith("/"):  # where the old merge wrote the file: next to the kit's folder
        assert not (kit.path / ".." / ".." / "escaped").resolve().exists()
    kit.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert table_dump(kit.store_path) == before
    assert sorted(p.relative_to(kit.path) for p in kit.path.rglob("*") if "store.sqlite" not in p.name) == files_before


def test_merge_refuses_a_link_to_a_file_outside_the_station(tmp_path):
    kit, station = _station(tmp_path)
    cid, sha = _scan_at_station(station, "linked")
    rel = f"pages/{sha[:2]}/{sha}-p1.png"
    (station / rel).parent.mkdir(parents=True, exist_ok=True)
    secret = tmp_path / "b" / "secret.txt"
    secret.write_text("someone else's file")
    (station / rel).symlink_to(secret)
    _craft(station, "UPDATE captures SET image_path = ? WHERE capture_id = ?", [rel, cid])
    with pytest.raises(BadInput, match=f"capture {cid}: image_path .* link to a file outside"):
        merge_store(kit, station, "it")
    assert not (kit.path / rel).exists()


def test_merge_refuses_a_well_formed_path_of_another_file(tmp_path):
    kit, station = _station(tmp_path)
    cid, sha = _scan_at_station(station, "other-file")
    other = hashlib.sha256(b"x").hexdigest()
    _craft(station, "UPDATE captures SET image_path = ? WHERE capture_id = ?",
           [f"pages/{other[:2]}/{other}-p1.png", cid])
    with pytest.raises(BadInput, match="does not match the file's SHA-256"):
        merge_store(kit, station, "it")


def test_merge_copies_content_addressed_files(tmp_path):
    kit, station = _station(tmp_path)
    cid, sha = _scan_at_station(station, "good")
    rel = f"pages/{sha[:2]}/{sha}-p1.png"
    crop = f"crops/{sha[:2]}/{sha}-p1/collected_at~0123456789.png"
    for r in (rel, crop):
        (station / r).parent.mkdir(parents=True, exist_ok=True)
        (station / r).write_bytes(b"png")
    _craft(station, "UPDATE captures SET image_path = ? WHERE capture_id = ?", [rel, cid])
    _craft(station, "UPDATE readings SET crop_path = ? WHERE capture_id = ? AND field = 'collected_at'", [crop, cid])
    added = merge_store(kit, station, "it")["added"]
    assert added["captures"] == 1 and added["files"] == 2
    assert (kit.path / rel).read_bytes() == b"png" and (kit.path / crop).exists()
