"""Downtime number ranges from the EHR (issue 13 item 6): blank stock uses them, never twice, refuses
stock that would run them dry, and two stations (copies of the kit) with their own sub-ranges merge
without a clash — while two stations that handed out the same number are refused by merge."""
import re
import shutil

import pytest
from click.testing import CliRunner

from fallbackkit.cli import cli
from fallbackkit.errors import Conflict
from fallbackkit.generate import print_blank
from fallbackkit.generate.id_ranges import load_range, remaining
from fallbackkit.reconcile import merge_store
from fallbackkit.store import init_kit, open_kit


def run(kit_path, *args):
    return CliRunner().invoke(cli, ["--kit", str(kit_path), "--user", "tester", *args])


def mrns(result):
    return [s["mrn"] for s in result.sheets if s["page"] == 1]


def test_loaded_range_is_used_in_order_and_never_reused(tmp_path):
    kit = init_kit(tmp_path / "kit", actor="tester")
    loaded = run(kit.path, "ids", "load", "--kind", "mrn", "--from", "9000001", "--to", "9000005")
    assert loaded.exit_code == 0, loaded.output
    assert "mrn range 9000001-9000005 loaded (5 numbers); 5 mrn numbers left" in loaded.output
    first = print_blank(kit, "vitals", 3, tmp_path / "a.pdf")
    assert mrns(first) == ["9000001", "9000002", "9000003"]
    second = print_blank(kit, "vitals", 2, tmp_path / "b.pdf")
    assert mrns(second) == ["9000004", "9000005"]
    with pytest.raises(Conflict, match="needs 1 mrn numbers but the loaded mrn ranges have 0 left; nothing printed"):
        print_blank(kit, "vitals", 1, tmp_path / "c.pdf")
    assert not (tmp_path / "c.pdf").exists()
    load_range(kit, "mrn", "9000100", "9000102", "tester")
    refused = run(kit.path, "print", "vitals", "--blank", "5", "--out", str(tmp_path / "d.pdf"))
    assert refused.exit_code == 6 and "have 3 left" in refused.output and not (tmp_path / "d.pdf").exists()
    overlap = run(kit.path, "ids", "load", "--kind", "mrn", "--from", "9000004", "--to", "9000010")
    assert overlap.exit_code == 6 and "overlaps the range 9000001-9000005" in overlap.output
    # Kinds without a loaded range keep the kit's own pool; the loaded kind uses the range.
    reg = print_blank(kit, "registration", 1, tmp_path / "e.pdf")
    assert reg.sheets[0]["mrn"] == "9000100" and reg.sheets[0]["encounter"].startswith("DTE")
    listed = run(kit.path, "ids", "list", "--json")
    assert '"left": 2' in listed.output and '"used": 5' in listed.output
    used = [r[0] for r in kit.db.execute("SELECT value FROM downtime_ids WHERE kind = 'mrn'")]
    assert len(used) == len(set(used)) == 6
    kit.close()


def test_leading_zeros_are_kept(tmp_path):
    kit = init_kit(tmp_path / "kit", actor="tester")
    load_range(kit, "accession", "0012000", "0012009", "tester")
    lab = print_blank(kit, "lab-request", 2, tmp_path / "lab.pdf")
    assert [s["accession"] for s in lab.sheets if s["page"] == 1] == ["0012000", "0012001"]
    kit.close()


def two_stations(tmp_path):
    a = init_kit(tmp_path / "station-a", actor="tester")
    a.close()
    shutil.copytree(tmp_path / "station-a", tmp_path / "station-b")  # a station is a copy of the kit
    return open_kit(tmp_path / "station-a"), open_kit(tmp_path / "station-b")


def test_two_stations_with_their_own_sub_ranges_merge_and_never_reuse(tmp_path):
    a, b = two_stations(tmp_path)
    # The hospital reserved 9000001-9000020; each station loads its own half.
    load_range(a, "mrn", "9000001", "9000010", "tester", note="station A")
    load_range(b, "mrn", "9000011", "9000020", "tester", note="station B")
    got_a = mrns(print_blank(a, "vitals", 4, tmp_path / "a.pdf"))
    got_b = mrns(print_blank(b, "vitals", 4, tmp_path / "b.pdf"))
    assert got_a == ["9000001", "9000002", "9000003", "9000004"]
    assert got_b == ["9000011", "9000012", "9000013", "9000014"]
    b.close()
    merged = merge_store(a, tmp_path / "station-b", "tester")
    assert merged["added"]["downtime_ids"] == 4
    assert merged["shared_ranges"] == []
    more = mrns(print_blank(a, "vitals", 6, tmp_path / "a2.pdf"))
    assert more == ["9000005", "9000006", "9000007", "9000008", "9000009", "9000010"]
    everything = [r[0] for r in a.db.execute("SELECT value FROM downtime_ids WHERE kind = 'mrn'")]
    assert len(everything) == len(set(everything)) == 14
    with pytest.raises(Conflict, match="needs 1 mrn numbers but the loaded mrn ranges have 0 left"):
        print_blank(a, "vitals", 1, tmp_path / "a3.pdf")
    a.close()


def test_merge_refuses_two_stations_that_used_the_same_number(tmp_path):
    """The mistake to catch: the kit was copied after the whole range was loaded."""
    a = init_kit(tmp_path / "station-a", actor="tester")
    load_range(a, "mrn", "9000001", "9000010", "tester")
    a.close()
    shutil.copytree(tmp_path / "station-a", tmp_path / "station-b")
    a, b = open_kit(tmp_path / "station-a"), open_kit(tmp_path / "station-b")
    print_blank(a, "vitals", 2, tmp_path / "a.pdf")
    print_blank(b, "vitals", 2, tmp_path / "b.pdf")
    b.close()
    before = a.db.execute("SELECT COUNT(*) FROM downtime_ids").fetchone()[0]
    result = run(a.path, "merge", str(tmp_path / "station-b"))
    assert result.exit_code == 6
    assert re.search(r"downtime identifier 9000001 was printed on different forms at the two stations .*"
                     r"nothing was merged", result.output)
    assert "own sub-range" in result.output
    assert a.db.execute("SELECT COUNT(*) FROM downtime_ids").fetchone()[0] == before
    assert remaining(a, "mrn") == 8
    a.close()


def test_bad_ranges_are_one_line(tmp_path):
    kit = init_kit(tmp_path / "kit", actor="tester")
    for args, message in [(["--from", "9000A", "--to", "9000500"], "--from '9000A': give the number"),
                          (["--from", "9000500", "--to", "9000001"], "--to 9000001 is below --from 9000500"),
                          (["--from", "1", "--to", "2000000"], "more than one load takes")]:
        result = run(kit.path, "ids", "load", "--kind", "mrn", *args)
        assert result.exit_code == 4 and message in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert run(kit.path, "ids", "list", "--json").output.strip() == "[]"
    kit.close()


def test_station_parts_split_the_block_without_overlap(tmp_path):
    """`ids load --part K/N`: the same command on each station, only K changing."""
    from fallbackkit.generate.id_ranges import station_part
    parts = [station_part("9000001", "9000500", f"{k}/3") for k in (1, 2, 3)]
    assert parts == [("9000001", "9000166"), ("9000167", "9000333"), ("9000334", "9000500")]
    assert station_part("0012000", "0012009", "1/2") == ("0012000", "0012004")
    a, b = two_stations(tmp_path)
    for kit, k in ((a, 1), (b, 2)):
        result = run(kit.path, "ids", "load", "--kind", "mrn", "--from", "9000001", "--to", "9000500",
                     "--part", f"{k}/3")
        assert result.exit_code == 0, result.output
    assert "mrn range 9000167-9000333 loaded (167 numbers)" in result.output
    got_a = mrns(print_blank(a, "vitals", 2, tmp_path / "a.pdf"))
    got_b = mrns(print_blank(b, "vitals", 2, tmp_path / "b.pdf"))
    assert got_a == ["9000001", "9000002"] and got_b == ["9000167", "9000168"]
    b.close()
    assert merge_store(a, tmp_path / "station-b", "tester")["added"]["downtime_ids"] == 2
    assert "part 1/3 of 9000001-9000500" in run(a.path, "ids", "list").output
    bad = run(a.path, "ids", "load", "--kind", "mrn", "--from", "1", "--to", "9", "--part", "4/3")
    assert bad.exit_code == 4 and "give K/N" in bad.output
    a.close()


def test_merge_warns_when_both_stations_hold_the_same_range(tmp_path):
    a = init_kit(tmp_path / "station-a", actor="tester")
    load_range(a, "mrn", "9000001", "9000010", "tester")
    a.close()
    shutil.copytree(tmp_path / "station-a", tmp_path / "station-b")
    b = open_kit(tmp_path / "station-b")
    print_blank(b, "vitals", 1, tmp_path / "b.pdf")  # only one station printed: no clash yet
    b.close()
    result = run(tmp_path / "station-a", "merge", str(tmp_path / "station-b"))
    assert result.exit_code == 0, result.output
    assert "warning: both stations hold the mrn numbers 9000001-9000010" in result.output
    assert "--part K/N" in result.output
