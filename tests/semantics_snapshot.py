"""What the kit makes of its forms, as one JSON document: the worklist items, the consistency flags
and the FHIR bundles of three scenarios (the export scenario with exact values, the real
print -> simulate -> scan scenario, and a demo-like kit: two wards, blank stock, mixed damage,
the demo's scripted clerk).

The golden file tests/data/semantics-golden.json was written by this module from the code that
hard-coded each form's meaning by template name, before the templates said it themselves; the test
(tests/test_semantics.py) proves the declarative templates give the same output. Regenerate only
on purpose, with a reason in the commit:

    PYTHONPATH=$PWD python tests/semantics_snapshot.py tests/data/semantics-golden.json

Random parts are pinned (kit id, sheet ids, kit secret) and what depends on the clock or on the
bytes of a PDF (timestamps, file hashes, the uuids made from them) is replaced by tokens in order
of first appearance, so two runs give the same document.
"""
from __future__ import annotations

import json
import random
import re
import secrets
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).parent))

from kit_helpers import census_kit  # noqa: E402

GOLDEN = Path(__file__).parent / "data" / "semantics-golden.json"
TZ = "Europe/Brussels"
# "size": a page image holds the printing time ("data as of", "printed"), so its byte size moves too
# "data": the page image itself (a Binary's or an inline attachment's), base64 of those same bytes
_CLOCK_KEYS = {"timestamp", "recorded", "date", "entered_at", "exported_at", "at", "size", "data"}
_TOKENS = [
    ("uuid", re.compile(r"urn:uuid:[0-9a-f-]{36}")),
    ("id", re.compile(r"(?<![0-9a-f:-])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")),  # Binary ids
    ("sha", re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")),  # also inside URL-encoded searches
    ("sha1", re.compile(r"[A-Za-z0-9+/]{27}=")),  # base64 SHA-1 of an attachment
    ("page", re.compile(r"pages/[A-Z0-9]+-[0-9a-f]{8}-\d+\.png")),
]


@contextmanager
def pinned_randomness(seed: int = 1) -> Iterator[None]:
    """Kit id, sheet ids and the kit secret drawn from a seeded generator instead of `secrets`."""
    rng = random.Random(seed)
    saved = secrets.randbits, secrets.token_hex
    secrets.randbits = rng.getrandbits  # type: ignore[assignment]
    secrets.token_hex = lambda n=32: rng.getrandbits(8 * n).to_bytes(n, "big").hex()  # type: ignore[assignment]
    try:
        yield
    finally:
        secrets.randbits, secrets.token_hex = saved  # type: ignore[assignment]


class _Tokens:
    def __init__(self, root: Path) -> None:
        self.seen: dict[str, str] = {}
        self.root = str(root)

    def text(self, s: str) -> str:
        s = s.replace(self.root, "<root>")
        for kind, pattern in _TOKENS:
            s = pattern.sub(lambda m: self.seen.setdefault(m.group(0), f"<{kind}{len(self.seen)}>"), s)
        return s

    def walk(self, data: Any, key: str | None = None) -> Any:
        if isinstance(data, dict):
            return {k: ("<clock>" if k in _CLOCK_KEYS and v else self.walk(v, k)) for k, v in data.items()}
        if isinstance(data, list):
            return [self.walk(v) for v in data]
        if isinstance(data, str):
            return self.text(data)
        return data


def snapshot(kit, out_dir: Path) -> dict[str, Any]:
    """Worklist, flags per form and FHIR bundles + pending of one kit, normalised."""
    from fallbackkit.export import export_fhir
    from fallbackkit.reconcile import reconcile, worklist

    items = [i.as_dict() for i in worklist(kit)]
    flags = {f["form_id"]: f["flags"] for f in reconcile(kit)["forms"] if f["flags"]}
    fhir_dir = out_dir / "fhir-snapshot"
    export_fhir(kit, fhir_dir, tz=TZ)
    bundles = {p.name: json.loads(p.read_text()) for p in sorted(fhir_dir.glob("bundle-*.json"))}
    pending = json.loads((fhir_dir / "pending.json").read_text())
    pending = {"items": pending["items"], "skipped_entered": pending["skipped_entered"]}
    skip_dir = out_dir / "fhir-skip-entered"
    export_fhir(kit, skip_dir, tz=TZ, skip_entered=True)
    skipped = json.loads((skip_dir / "pending.json").read_text())["skipped_entered"]
    # the order of forms printed in the same second follows the clock: compare as sets
    for bundle in bundles.values():
        bundle["entry"].sort(key=lambda e: e["request"].get("ifNoneExist") or e["request"]["url"])
    order = lambda row: (str(row.get("item")), str(row.get("form_id")))  # noqa: E731
    pending["items"].sort(key=order)
    pending["skipped_entered"].sort(key=order)
    skipped.sort(key=order)
    tokens = _Tokens(out_dir)
    return tokens.walk({"worklist": items, "flags": flags, "fhir": bundles, "pending": pending,
                        "skipped_with_skip_entered": skipped})


def export_scenario(root: Path) -> dict[str, Any]:
    from export_helpers import build_scenario
    kit = census_kit(root)
    try:
        build_scenario(kit, root)
        return snapshot(kit, root)
    finally:
        kit.close()


def scan_scenario(root: Path) -> dict[str, Any]:
    import export_helpers
    kit = census_kit(root, wards={"3B": 3, "ICU": 2})
    try:
        export_helpers.scan_scenario(kit, root)
        return snapshot(kit, root)
    finally:
        kit.close()


def demo_like(root: Path) -> dict[str, Any]:
    """The demo's steps through the library: print every ward and blank stock, simulate ward 3B
    (mixed damage) and the blank registrations, scan, the demo's scripted clerk."""
    import shutil

    from fallbackkit.demo import scripted_clerk
    from fallbackkit.generate import import_census, print_all_wards, print_blank
    from fallbackkit.generate.sample import write_census
    from fallbackkit.scan.pipeline import scan_paths
    from fallbackkit.scan.simulate import simulate
    from fallbackkit.store import init_kit, open_kit
    from kit_helpers import AS_OF

    kit = init_kit(root / "kit", actor="demo")
    patients, meds = write_census(root / "census", {"3B": 8, "ICU": 4}, seed=7)
    import_census(kit, patients, meds, actor="demo", as_of=AS_OF)
    print_all_wards(kit, root / "packs", actor="demo", langs=("fr", "nl"))
    print_blank(kit, "registration", 3, root / "blank-registration.pdf", actor="demo")
    print_blank(kit, "lab-request", 3, root / "blank-lab-request.pdf", actor="demo")
    simulate(kit, root / "packs" / "ward-3B.pdf", root / "scans" / "3B", seed=1, tier="mixed")
    simulate(kit, root / "blank-registration.pdf", root / "scans" / "blank", seed=8)
    truth = []
    for name in ("3B", "blank"):
        target = root / "truth" / f"{name}.json"
        target.parent.mkdir(exist_ok=True)
        shutil.move(root / "scans" / name / "truth.json", target)
        truth.append(target)
    files = sorted(p for p in (root / "scans").rglob("*") if p.is_file())
    scan_paths(kit, files, workers=0, progress=False)
    kit.close()
    scripted_clerk(root / "kit", truth)
    kit = open_kit(root / "kit")
    try:
        return snapshot(kit, root)
    finally:
        kit.close()


SCENARIOS = {"export": export_scenario, "scan": scan_scenario, "demo": demo_like}


def build(root: Path) -> dict[str, Any]:
    out = {}
    for name, make in SCENARIOS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        with pinned_randomness():
            out[name] = make(root / name)
    return out


def main(argv: list[str]) -> None:
    import tempfile
    target = Path(argv[0]) if argv else GOLDEN
    with tempfile.TemporaryDirectory() as tmp:
        data = build(Path(tmp))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"wrote {target}: " + ", ".join(f"{k}: {len(v['worklist'])} items, {len(v['flags'])} forms flagged, "
                                          f"{len(v['fhir'])} bundles" for k, v in data.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
