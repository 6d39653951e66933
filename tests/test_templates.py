"""Templates: validation names file, field and problem; the layout engine is deterministic and
produces boxes a nurse can write in, that do not overlap, on every paper size and language pair."""
from itertools import combinations
from pathlib import Path

import pytest
import yaml

from fallbackkit.errors import TemplateError
from fallbackkit.store.kit import SHIPPED_TEMPLATES
from fallbackkit.templates import layout_form, load_template, load_templates
from fallbackkit.templates.layout import MARGIN, PAPER_SIZES_MM, parse_langs

MEDS = [
    {"line": 1, "medication": "Paracetamol", "dose": "1 g", "route": "PO", "frequency": "QID",
     "scheduled_times": "06:00;12:00;18:00;24:00", "prn": 0},
    {"line": 2, "medication": "Enoxaparin", "dose": "40 mg", "route": "SC", "frequency": "daily",
     "scheduled_times": "20:00", "prn": 0},
    {"line": 3, "medication": "Morphine", "dose": "2 mg", "route": "IV", "frequency": "PRN", "scheduled_times": None,
     "prn": 1},
]


def boxes(geometry_fields):
    for f in geometry_fields:
        if "options" in f:
            for o in f["options"]:
                yield f["name"] + "=" + o["value"], f["type"], o["box_mm"]
        else:
            yield f["name"], f["type"], f["box_mm"]


def overlap(a, b):
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


@pytest.fixture(scope="module")
def shipped():
    return load_templates(SHIPPED_TEMPLATES)


def test_shipped_templates_cover_downtime_forms(shipped):
    assert {"registration", "lab-request", "mar", "vitals"} <= set(shipped)
    reg = shipped["registration"].field_names()
    assert {"last_name", "first_name", "birth_date", "arrival_mode", "allergies_known"} <= set(reg)
    lab = shipped["lab-request"]
    assert {"ordering_clinician", "priority", "specimen", "tests", "collected_at", "collector_initials"} <= set(lab.field_names())
    assert [o.value for o in next(f for s in lab.sections for f in s.fields if f.name == "priority").options] == \
        ["routine", "urgent", "stat"]


@pytest.mark.parametrize("paper", sorted(PAPER_SIZES_MM))
@pytest.mark.parametrize("langs", [("en",), ("fr", "nl"), ("nl", "en")])
def test_layout_is_writable_and_tidy(shipped, paper, langs):
    for name in ("registration", "lab-request", "mar", "vitals"):
        for context in ({"medications": MEDS}, {"blank_stock": True}):
            pages = layout_form(shipped[name], paper, langs, context)
            w, h = PAPER_SIZES_MM[paper]
            names = []
            for page in pages:
                placed = list(boxes(page.fields))
                names += [f["name"] for f in page.fields]
                for label, ftype, (x, y, bw, bh) in placed:
                    assert bw >= 5 and bh >= 5, f"{name} {label}: {bw}x{bh} mm is too small for a pen"
                    assert MARGIN - 0.01 <= x and x + bw <= w - MARGIN + 0.01, f"{name} {label} outside margins"
                    assert y >= MARGIN and y + bh <= h - MARGIN - 13, f"{name} {label} runs into the footer"
                for (la, _, a), (lb, _, b) in combinations(placed, 2):
                    assert not overlap(a, b), f"{name}: {la} overlaps {lb}"
            assert len(names) == len(set(names)), f"{name}: duplicate field names"


def test_layout_is_deterministic_and_names_are_stable(shipped):
    a = layout_form(shipped["mar"], "a4", ("fr", "nl"), {"medications": MEDS})
    b = layout_form(shipped["mar"], "a4", ("fr", "nl"), {"medications": MEDS})
    assert [p.items for p in a] == [p.items for p in b]
    assert [p.geometry_hash() for p in a] == [p.geometry_hash() for p in b]
    other_lang = layout_form(shipped["mar"], "a4", ("en",), {"medications": MEDS})
    assert [f["name"] for p in a for f in p.fields] == [f["name"] for p in other_lang for f in p.fields]


def test_mar_rows_follow_the_medications(shipped):
    pages = layout_form(shipped["mar"], "a4", ("en",), {"medications": MEDS})
    fields = {f["name"]: f for p in pages for f in p.fields}
    assert [fields[f"m1.s{i}.status"]["scheduled"] for i in range(1, 5)] == ["06:00", "12:00", "18:00", "24:00"]
    assert fields["m2.s1.status"]["scheduled"] == "20:00" and "m2.s2.status" not in fields
    assert [o["value"] for o in fields["m1.s1.status"]["options"]] == ["given", "held", "refused"]
    assert fields["p1.s1.given"]["type"] == "checkbox" and fields["p1.s1.time"]["type"] == "datetime"
    assert fields["n1.order"]["type"] == "text"


def test_long_forms_break_onto_more_pages(shipped):
    many = [dict(MEDS[0], line=i, medication=f"Drug {i}") for i in range(1, 16)]
    pages = layout_form(shipped["mar"], "a4", ("en",), {"medications": many})
    assert len(pages) >= 3
    assert all(p.pages == len(pages) for p in pages)
    assert [p.page for p in pages] == list(range(1, len(pages) + 1))


def test_parse_langs():
    assert parse_langs("fr,nl") == ("fr", "nl")
    for bad in ["de", "en,fr,nl", "en,en", ""]:
        with pytest.raises(Exception, match="--lang"):
            parse_langs(bad)


GOOD = {
    "name": "tiny", "version": 1, "patient_bound": False,
    "title": {"en": "Tiny", "fr": "Petit", "nl": "Klein"},
    "sections": [{"title": {"en": "A", "fr": "A", "nl": "A"},
                  "fields": [{"name": "ok", "type": "checkbox", "label": {"en": "ok", "fr": "ok", "nl": "ok"}}]}],
}


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True) if not isinstance(data, str) else data)
    return path


def test_good_template_loads(tmp_path):
    assert load_template(_write(tmp_path, GOOD)).ref == "tiny@1"


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["sections"][0]["fields"][0].update(type="slider"), r"field 1 'ok': type 'slider'"),
    (lambda d: d["sections"][0]["fields"][0]["label"].pop("nl"), r"'ok' label: label is missing language\(s\): nl"),
    (lambda d: d["sections"][0]["fields"].append(dict(d["sections"][0]["fields"][0])), r"field 'ok'.*unique"),
    (lambda d: d["sections"][0]["fields"][0].update(type="choice"), r"'ok': a choice needs a list of at least two"),
    (lambda d: d["sections"][0]["fields"][0].update(name="Bad Name"), r"field name 'Bad Name'"),
    (lambda d: d.update(version="two"), r"'version' must be a whole number"),
    (lambda d: d["sections"][0]["fields"][0].update(colour="red"), r"'ok': unknown key\(s\): colour"),
    (lambda d: d["sections"][0]["fields"][0].update(type="number"), r"'ok': 'digits' must be"),
    (lambda d: d["sections"][0]["fields"][0].update(range=[0, 1]), r"'ok': 'range' is for number fields"),
    (lambda d: d["sections"][0]["fields"][0].update(type="number", digits=2, range=[40, 30]),
     r"'ok': 'range' must be \[low, high\]"),
    (lambda d: d["sections"][0]["fields"][0].update(type="number", digits=2, range=[0, 300]),
     r"'ok': 'range' \[0, 300\] does not fit 2 digit"),
    (lambda d: d["sections"][0]["fields"][0].update(type="text", transcribe="maybe"),
     r"'ok': 'transcribe' must be one of yes, ink-only, no"),
    (lambda d: d["sections"][0]["fields"][0].update(transcribe="yes"), r"'ok': a checkbox is read from its marks"),
    (lambda d: d["sections"][0]["fields"][0].update(type="number", digits=2, observation={"display": "x"}),
     r"'ok' observation: a number needs its UCUM 'unit'"),
    (lambda d: d["sections"][0]["fields"][0].update(observation={"display": "x"}),
     r"'ok' observation: a checkbox cannot be exported"),
    (lambda d: d["sections"][0]["fields"][0].update(when_empty={"flag": "Bad Code", "message": "m"}),
     r"'ok' when_empty: 'flag' must be a code"),
    (lambda d: d["sections"][0]["fields"][0].update(required="sometimes"), r"'ok': 'required' must be true, false"),
    (lambda d: d.update(reentry=[{"each": "form", "kind": "order"}]), r"reentry item 1: an item made once per form needs an 'id'"),
    (lambda d: d.update(reentry=[{"each": "column", "kind": "vitals", "fhir": "observation", "date": "ok", "time": "ok"}]),
     r"reentry item 1: 'each: column' needs a grid section"),
    (lambda d: d.update(reentry=[{"each": "form", "kind": "result", "id": "x", "care_time": ["nope"]}]),
     r"reentry item 1: names field 'nope'"),
    (lambda d: d.update(reentry=[{"each": "form", "kind": "order", "id": "x", "fhir": "service-request",
                                  "roles": {"tests": "ok"}}]),
     r"reentry item 1 roles: a service-request needs the roles 'tests' and 'collected'"),
    (lambda d: d.update(reentry=[{"each": "slot", "kind": "medication"}]), r"'each: slot' needs a medications section"),
])
def test_validation_names_file_field_and_problem(tmp_path, mutate, expected):
    import copy
    data = copy.deepcopy(GOOD)
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(TemplateError, match=expected) as err:
        load_template(path)
    assert str(path) in str(err.value)


def test_range_and_transcribe_of_the_shipped_vitals(shipped):
    vitals = shipped["vitals"]
    rows = {r.name: r for s in vitals.sections if s.grid for r in s.grid.rows}
    assert rows["temperature"].range == (30.0, 45.0)
    assert rows["spo2"].range == (50.0, 100.0)
    assert rows["avpu"].range is None and rows["avpu"].transcribe == "no"
    assert rows["initials"].transcribe == "yes"
    signatures = [f for t in shipped.values() for s in t.sections for f in s.fields if f.type == "signature"]
    assert signatures and all(f.transcribe == "ink-only" for f in signatures)


def test_transcribe_defaults_by_type(tmp_path):
    import copy
    data = copy.deepcopy(GOOD)
    data["sections"][0]["fields"] += [
        {"name": "t", "type": "text", "label": GOOD["title"]},
        {"name": "s", "type": "signature", "label": GOOD["title"]},
        {"name": "n", "type": "number", "digits": 2, "transcribe": "no", "label": GOOD["title"]}]
    fields = {f.name: f for f in load_template(_write(tmp_path, data)).sections[0].fields}
    assert (fields["ok"].transcribe, fields["t"].transcribe, fields["s"].transcribe, fields["n"].transcribe) \
        == ("no", "yes", "ink-only", "no")


def test_broken_yaml_names_the_file(tmp_path):
    path = _write(tmp_path, "name: [unclosed\n")
    with pytest.raises(TemplateError, match="not valid YAML") as err:
        load_template(path)
    assert str(path) in str(err.value)


MEANING_KEYS = {"reentry", "observation", "range", "transcribe", "when_empty", "checks"}


def _without_meaning(data):
    """A template as kits made before templates declared their meaning hold it."""
    if isinstance(data, dict):
        out = {k: _without_meaning(v) for k, v in data.items() if k not in MEANING_KEYS}
        if out.get("required") == "blank-stock":
            out["required"] = True
        return out
    if isinstance(data, list):
        return [_without_meaning(v) for v in data]
    return data


def test_an_upgraded_kit_keeps_the_meaning_of_its_shipped_templates(tmp_path):
    """A kit made by the earlier release holds template copies without `reentry:`: printed the
    same as the shipped ones, they take the shipped meaning; a changed copy does not."""
    from fallbackkit.generate import kit_templates
    from fallbackkit.store import init_kit
    kit = init_kit(tmp_path / "kit", actor="tester")
    for path in kit.templates_dir.glob("*.yaml"):
        path.write_text(yaml.safe_dump(_without_meaning(yaml.safe_load(path.read_text())), allow_unicode=True))
    assert not load_templates(kit.templates_dir)["vitals"].reentry
    found = kit_templates(kit)
    assert [r.each for r in found["vitals"].reentry] == ["column", "fields"]
    assert found["vitals@1"].spec("temperature").observation.loinc == "8310-5"
    assert found["mar"].medications.checks and found["registration"].reentry
    changed = kit.templates_dir / "vitals.yaml"
    data = yaml.safe_load(changed.read_text())
    data["sections"][0]["fields"][0]["label"]["en"] = "Day of the observations"
    changed.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert not kit_templates(kit)["vitals"].reentry  # prints differently: means only what it declares
    kit.close()


def test_templates_are_parsed_once_per_content_and_an_edit_is_read_at_once(tmp_path):
    import shutil
    import time
    folder = tmp_path / "form_templates"
    shutil.copytree(SHIPPED_TEMPLATES, folder)
    first = load_templates(folder)
    t0 = time.perf_counter()
    again = load_templates(folder)
    assert (time.perf_counter() - t0) < 0.02  # no YAML parsed again (parsing them takes ~40 ms)
    assert again == first and again is not first  # the caller's own dict
    path = folder / "vitals.yaml"
    text = path.read_text()
    doc = yaml.safe_load(text)
    doc["version"] = int(doc["version"]) + 1
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    newer = load_templates(folder)
    assert newer["vitals"].version == first["vitals"].version + 1


def test_templates_of_some_names_only(tmp_path):
    """A scan's summaries parse only the templates of the forms it read: the file's declared name
    decides (not its file name), every version of that name is kept, and a file whose name cannot
    be told without parsing is parsed, so that its error still shows."""
    import shutil
    from fallbackkit.templates import model
    for path in SHIPPED_TEMPLATES.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    mar = yaml.safe_load((tmp_path / "mar.yaml").read_text())
    (tmp_path / "zz-medication-v2.yaml").write_text(yaml.safe_dump({**mar, "version": 2}))
    got = load_templates(tmp_path, frozenset({"mar"}))
    assert set(got) == {"mar", "mar@1", "mar@2"} and got["mar"].version == 2
    assert got["mar@1"] == load_templates(tmp_path)["mar@1"]
    assert model._declared_name((tmp_path / "vitals.yaml").read_bytes()) == "vitals"
    # a name after nested sections, quoted, or not there / not YAML at all
    assert model._declared_name(b"sections:\n  - {a: [1, 2]}\n  - b: {name: x}\nname: 'late'\n") == "late"
    assert model._declared_name(b"version: 1\n") is None
    assert model._declared_name(b"name: [unclosed\n") is None
    assert model._declared_name(b"name: mar\nversion: 1\nname: vitals\n") is None  # YAML keeps the last
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(TemplateError, match="broken.yaml"):
        load_templates(tmp_path, frozenset({"mar"}))
