"""The command line: exit codes and one-line messages for the kit and printing commands."""
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fallbackkit.cli import cli
from fallbackkit.errors import ExitCode
from fallbackkit.generate.sample import write_census


@pytest.fixture
def run(tmp_path):
    runner = CliRunner()
    kit_dir = tmp_path / "kit"

    def invoke(*args, kit=kit_dir):
        return runner.invoke(cli, ["--kit", str(kit), "--user", "tester", *args], catch_exceptions=False)
    return invoke


@pytest.fixture
def ready(run, tmp_path):
    assert run("init").exit_code == 0
    patients, meds = write_census(tmp_path / "census")
    result = run("census", "import", str(patients), "--meds", str(meds), "--as-of", "2026-11-28T06:00")
    assert result.exit_code == 0, result.output
    return run


def test_init_and_refuse_overwrite(run, tmp_path):
    result = run("init")
    assert result.exit_code == 0 and "created" in result.output
    secret = tmp_path / "kit" / "secret.key"
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    again = run("init")
    assert again.exit_code == ExitCode.CONFLICT
    assert "a kit already exists" in again.output and "Traceback" not in again.output


def test_missing_kit_says_what_to_do(run, tmp_path):
    result = run("templates", "list", kit=tmp_path / "nowhere")
    assert result.exit_code == ExitCode.NO_KIT
    assert "no kit at" in result.output and "fallbackkit init" in result.output


def test_census_import_bad_file(ready, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("mrn,last_name\n1,A\n")
    result = ready("census", "import", str(bad))
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "bad.csv line 1: no column 'first_name' for first_name" in result.output
    assert "no column 'birth_date'" in result.output and "Traceback" not in result.output
    missing = ready("census", "import", str(tmp_path / "nope.csv"))
    assert missing.exit_code == ExitCode.BAD_INPUT and "cannot read patients file" in missing.output


def test_templates_list_json(ready):
    result = ready("templates", "list", "--json")
    data = json.loads(result.output)
    assert {(t["name"], t["version"], t["pages"]) for t in data} >= {("lab-request", 1, 1), ("vitals", 1, 2)}


def test_print_commands_and_json(ready, tmp_path):
    result = ready("print", "--ward", "3B", "--out", str(tmp_path / "3b.pdf"), "--json", "--lang", "fr,nl")
    assert result.exit_code == 0, result.output
    sheets = json.loads(result.stdout)
    assert sheets[0]["template"] == "registration" and sheets[0]["page"] == 1
    assert {"sheet_id", "template", "page", "pages"} <= set(sheets[0])
    blank = ready("print", "mar", "--blank", "2", "--out", str(tmp_path / "mar.pdf"), "--paper", "letter")
    assert blank.exit_code == 0 and "mar.pdf" in blank.output
    listed = json.loads(ready("sheets", "list", "--json").stdout)
    assert len(listed) == len(sheets) + sum(1 for s in listed if s["downtime_mrn"])
    shown = json.loads(ready("sheets", "show", sheets[0]["sheet_id"], "--json").stdout)
    assert shown["sheet_id"] == sheets[0]["sheet_id"] and shown["page_size_mm"] == [210.0, 297.0]
    assert all({"name", "type"} <= set(f) for f in shown["fields"])
    everything = ready("print", "--ward", "all", "--out", str(tmp_path / "packs"))
    assert everything.exit_code == 0 and "ward-ICU.pdf" in everything.output
    mrn = listed[0]["patient_mrn"]
    one = ready("print", "lab-request", "--patient", mrn, "--out", str(tmp_path / "lab.pdf"))
    assert one.exit_code == 0


@pytest.mark.parametrize("args, code, message", [
    (["print", "nosuch", "--blank", "1"], ExitCode.NOT_FOUND, "unknown template 'nosuch'"),
    (["print", "--ward", "7Z"], ExitCode.NOT_FOUND, "ward '7Z' has no patients"),
    (["print", "mar"], ExitCode.BAD_INPUT, "say what to print"),
    (["print", "mar", "--blank", "0"], ExitCode.BAD_INPUT, "--blank 0"),
    (["print", "--ward", "3B", "--lang", "de"], ExitCode.BAD_INPUT, "--lang 'de' is not valid"),
    (["print", "vitals", "--patient", "000"], ExitCode.NOT_FOUND, "no patient with MRN 000"),
    (["sheets", "show", "ABCDEFGHJ"], ExitCode.NOT_FOUND, "no sheet ABCDEFGHJ"),
])
def test_errors_are_one_line_with_exit_code(ready, tmp_path, args, code, message):
    result = ready(*args, "--out", str(tmp_path / "x.pdf")) if args[0] == "print" else ready(*args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.pdf").exists()


def test_print_without_census(run, tmp_path):
    run("init")
    result = run("print", "--ward", "3B", "--out", str(tmp_path / "x.pdf"))
    assert result.exit_code == ExitCode.NOT_FOUND and "census import" in result.output


def test_runs_as_module_with_env_kit(tmp_path):
    env = {**os.environ, "FALLBACKKIT_KIT": str(tmp_path / "envkit")}
    done = subprocess.run([sys.executable, "-m", "fallbackkit", "init"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "envkit" / "kit.json").exists()
    verbose = subprocess.run([sys.executable, "-m", "fallbackkit", "--verbose", "init"], env=env,
                             capture_output=True, text=True)
    assert verbose.returncode == ExitCode.CONFLICT and "Traceback" in verbose.stderr


def test_identities_link_checks_the_real_mrn_format_which_it_can_change(ready, tmp_path):
    run = ready
    assert run("print", "registration", "--blank", "2", "--out", str(tmp_path / "blank.pdf")).exit_code == 0
    listed = json.loads(run("identities", "list", "--json").stdout)
    dt1, dt2 = [i["downtime_mrn"] for i in listed if i["kind"] == "mrn"][:2]
    assert run("identities", "mrn-format").output.strip() == "[0-9]+"  # digits only by default
    for typo in ("10O345", "100 345", "12-34", "1" * 65, "１２３"):  # letter O, space, dash, too long, full-width
        result = run("identities", "link", dt1, typo, "--reason", "wristband")
        assert result.exit_code == ExitCode.BAD_INPUT and "does not look like a real MRN" in result.output, typo
        assert result.output.count("\n") == 1
    assert run("identities", "link", dt1, "100345", "--reason", "wristband").exit_code == 0
    for bad in ("(", "x*", ""):
        assert run("identities", "mrn-format", bad).exit_code == ExitCode.BAD_INPUT, bad
    result = run("identities", "mrn-format", "[A-Z]{2}[0-9]{4}")
    assert result.exit_code == 0 and "[A-Z]{2}[0-9]{4}" in result.output
    assert run("identities", "link", dt2, "100346", "--reason", "x").exit_code == ExitCode.BAD_INPUT
    assert run("identities", "link", dt2, "AB1234", "--reason", "registration").exit_code == 0
    from fallbackkit.store import open_kit
    kit = open_kit(tmp_path / "kit")
    try:
        rows = kit.db.conn.execute("SELECT actor, before, after FROM audit WHERE action = 'kit.mrn_format'").fetchall()
        links = kit.db.conn.execute("SELECT downtime_mrn, real_mrn FROM identity_links ORDER BY id").fetchall()
    finally:
        kit.close()
    assert rows == [("tester", '{"pattern": "[0-9]+"}', '{"pattern": "[A-Z]{2}[0-9]{4}"}')]
    assert links == [(dt1, "100345"), (dt2, "AB1234")]


def test_top_level_help_lists_commands_in_workflow_order_with_whole_summaries():
    result = CliRunner().invoke(cli, ["--help"], terminal_width=100)
    assert result.exit_code == 0
    text = result.output
    order = [text.index(f"\n  {name} ") for name in ("init", "census", "print", "scan", "review", "reconcile", "export")]
    assert order == sorted(order)
    assert "Ward staff" in text and "Records clerks" in text and "IT:" in text
    assert "..." not in text.split("Commands", 1)[-1].split("Ward staff", 1)[-1], "no summary is cut"


def test_scanning_an_empty_folder_says_no_files_found(run, tmp_path):
    run("init")
    empty = tmp_path / "inbox"
    empty.mkdir()
    result = run("scan", str(empty))
    assert result.exit_code == 0 and f"no files found in {empty}" in result.output


def test_demo_help_prints_help_and_out_must_be_empty(tmp_path):
    done = subprocess.run([sys.executable, "-m", "fallbackkit.demo", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "--out" in done.stdout and "fallbackkit demo in" not in done.stdout
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    done = subprocess.run([sys.executable, "-m", "fallbackkit.demo", "--out", str(tmp_path / "full")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "empty or new folder" in done.stderr
