"""Issuing sheets: ward packs, blank stock and single-patient forms.

Every printed sheet is registered in the store (sheet id, form, template@version, page, patient
binding, batch, layout geometry) in the same transaction that writes the PDF: either both happen
or neither does, so the registry never lists a sheet that was not printed, nor the other way round.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import ids
from ..errors import BadInput, NotFound
from ..files import OutputFiles, file_name, outside_kit
from ..payload import CoverPayload, SheetPayload
from ..store.audit import append_audit
from ..store.kit import Kit, now_iso
from ..templates import Template, find_template, layout_form, load_templates
from ..templates.layout import (HEADER_BOTTOM, LABEL_H, PAPER_SIZES_MM, HeaderLine, PageLayout, allergy_header,
                                header_body_top, header_bottom, header_top, place_header)
from ..templates.model import with_shipped_meaning
from ..templates.values import printed_date, printed_datetime
from . import census
from .id_ranges import allocate_from_range, check_enough
from .render import SheetToRender, draw_cover, write_pdf

WORDS = {
    "dob": {"en": "born", "fr": "né(e) le", "nl": "geboren"},
    "encounter": {"en": "Encounter", "fr": "Séjour", "nl": "Opname"},
    "ward": {"en": "Ward", "fr": "Unité", "nl": "Afdeling"},
    "bed": {"en": "Bed", "fr": "Lit", "nl": "Bed"},
    "allergies": {"en": "Allergies", "fr": "Allergies", "nl": "Allergieën"},
    "no_allergies": {"en": "none recorded", "fr": "aucune enregistrée", "nl": "geen geregistreerd"},
    "as_of": {"en": "data as of", "fr": "données du", "nl": "gegevens van"},
    "downtime_mrn": {"en": "Downtime MRN", "fr": "NIP provisoire", "nl": "Tijdelijk patiëntnr."},
    "accession": {"en": "Accession", "fr": "N° de demande", "nl": "Aanvraagnr."},
    "printed": {"en": "printed", "fr": "imprimé le", "nl": "afgedrukt op"},
    "patients": {"en": "patients", "fr": "patients", "nl": "patiënten"},
    "sheets": {"en": "sheets", "fr": "feuilles", "nl": "bladen"},
    "not_a_form": {"en": "This cover is not a form: keep it with the pack. Scanned with it, its code marks it as"
                         " the pack's cover (counted; nothing is read from it).",
                   "fr": "Cette page de garde n'est pas un formulaire : gardez-la avec le paquet. Scannée avec"
                         " lui, son code la signale comme page de garde (comptée ; rien n'y est lu).",
                   "nl": "Dit voorblad is geen formulier: bewaar het bij het pakket. Mee gescand, wijst de code"
                         " het aan als voorblad van het pakket (geteld; er wordt niets van gelezen)."},
    "double_sided": {
        "en": "PRINT DOUBLE-SIDED (long edge): each form on its own sheet, a two-page form front and back."
              " Printed one-sided: two sheets (both read right), blank backs as blank pages.",
        "fr": "IMPRIMER RECTO VERSO (bord long) : chaque formulaire sur sa feuille, deux pages au recto et au"
              " verso. Recto seul : deux feuilles (lues correctement), versos vides en pages blanches.",
        "nl": "DUBBELZIJDIG AFDRUKKEN (lange kant): elk formulier op een eigen blad, twee bladzijden voor en"
              " achter. Enkelzijdig: twee bladen (juist gelezen), lege achterkanten als lege bladen."},
    "on_paper": {"en": "on {n} sheets of paper, double-sided", "fr": "sur {n} feuilles de papier, recto verso",
                 "nl": "op {n} vellen papier, dubbelzijdig"},
    "cover": {"en": "pack cover", "fr": "page de garde", "nl": "voorblad"},
    "pack": {"en": "downtime pack", "fr": "paquet mode dégradé", "nl": "noodpakket"},
    "changes": {"en": "Changes since the previous census", "fr": "Changements depuis le recensement précédent",
                "nl": "Wijzigingen sinds de vorige patiëntenlijst"},
    "new": {"en": "NEW", "fr": "NOUVEAU", "nl": "NIEUW"},
    "day": {"en": "Day", "fr": "Jour", "nl": "Dag"},
}


def outage_days(kit: Kit, days: int, first_day: _dt.date | str | None = None) -> list[str]:
    """The N dates of the expected outage, from first_day (default: today in the kit's zone)."""
    if not 1 <= days <= 31:
        raise BadInput(f"--days {days}: give a number of days from 1 to 31")
    if first_day is None:
        from zoneinfo import ZoneInfo

        from ..store.settings import get_setting
        zone = get_setting(kit, "tz")
        first = _dt.datetime.now(ZoneInfo(zone) if zone else None).date()
    elif isinstance(first_day, str):
        try:
            first = _dt.date.fromisoformat(first_day)
        except ValueError:
            raise BadInput(f"--first-day {first_day!r} is not a date", hint="write it as YYYY-MM-DD") from None
    else:
        first = first_day
    return [(first + _dt.timedelta(days=k)).isoformat() for k in range(days)]


def _daily_orders(template: Template, make: Callable[..., FormOrder], days: list[str] | None) -> list[FormOrder]:
    """One form, or, for a daily form (one with a medications section: the MAR), one per day."""
    if not days or template.medications is None:
        return [make(template)]
    return [make(template, day=(d, k, len(days))) for k, d in enumerate(days, 1)]


def word(key: str, langs: tuple[str, ...]) -> str:
    return " / ".join(dict.fromkeys(WORDS[key][lang] for lang in langs))


@dataclass
class FormOrder:
    """One form to print: a template, who it is for, and what is pre-printed on it."""
    template: Template
    patient: dict[str, Any] | None = None
    medications: list[dict[str, Any]] = field(default_factory=list)
    shared_ids: dict[str, str] | None = None  # blank set: one downtime MRN and encounter for all its forms
    day: tuple[str, int, int] | None = None  # print --days N: (ISO date, day k, of N) printed on a daily form


@dataclass
class PrintResult:
    out_path: Path
    batch_id: int
    sheets: list[dict[str, Any]]
    forms: int
    ward: str | None = None
    double_sided: bool = False  # the PDF asks for duplex, each form starting on a front (blank backs)

    def as_json(self) -> list[dict[str, Any]]:
        return self.sheets


def kit_templates(kit: Kit, names: frozenset[str] | None = None) -> dict[str, Template]:
    """The kit's templates (names: only those of these names, see `load_templates`)."""
    from ..store.kit import SHIPPED_TEMPLATES
    source = kit.templates_dir if kit.templates_dir.is_dir() else None
    if source is None:
        return load_templates(SHIPPED_TEMPLATES, names)
    found = load_templates(source, names)
    if all(t.reentry for t in found.values()):
        return found
    return with_shipped_meaning(found, load_templates(SHIPPED_TEMPLATES, names))


def _patient_templates(templates: dict[str, Template]) -> list[Template]:
    latest = [t for key, t in templates.items() if "@" not in key and t.patient_bound]
    return sorted(latest, key=lambda t: (t.pack_order, t.name))


def _allocate(kit: Kit, kind: str, form_id: str, batch_id: int) -> str:
    """A fresh downtime identifier: from the hospital's loaded range of KIND if there is one, else
    from the kit's own pool (prefix, 7 digits, Luhn check digit)."""
    conn = kit.db.conn
    identifier = allocate_from_range(conn, kind)
    if identifier is None:
        prefix, value = conn.execute("SELECT prefix, next_value FROM id_pools WHERE kind = ?", [kind]).fetchone()
        conn.execute("UPDATE id_pools SET next_value = next_value + 1 WHERE kind = ?", [kind])
        digits = f"{value:07d}"
        identifier = f"{prefix}{digits}{ids.luhn_digit(digits)}"
    conn.execute("INSERT INTO downtime_ids (value, kind, form_id, batch_id, allocated_at) VALUES (?, ?, ?, ?, ?)",
                 [identifier, kind, form_id, batch_id, now_iso()])
    return identifier


def _fresh_sheet_ids(kit: Kit, count: int) -> list[str]:
    chosen: list[str] = []
    while len(chosen) < count:
        candidates = list(dict.fromkeys(ids.new_sheet_id() for _ in range(count - len(chosen))))
        candidates = [c for c in candidates if c not in chosen]
        marks = ",".join("?" * len(candidates))
        taken = {r[0] for r in kit.db.conn.execute(
            f"SELECT sheet_id FROM sheets WHERE sheet_id IN ({marks})", candidates)}
        chosen += [c for c in candidates if c not in taken]
    return chosen


def _patient_header(p: dict[str, Any], snapshot_time: str, langs, paper: str) -> tuple[list[HeaderLine], bool]:
    """The pre-printed identity lines; True when the allergies do not fit the header box and the
    sheet carries the full list."""
    enc = f" · {word('encounter', langs)} {p['encounter']}" if p.get("encounter") else ""
    allergies, overflow = allergy_header(p.get("allergies") or word("no_allergies", langs), langs, paper)
    return [
        HeaderLine(f"{p['last_name'].upper()}, {p['first_name']}", 11, True, max_lines=2),
        HeaderLine(f"MRN {p['mrn']} · {word('dob', langs)} {printed_date(p['birth_date'])}{enc} · "
                   f"{word('ward', langs)} {p['ward']} · {word('bed', langs)} {p['bed']}", 9.5, True, max_lines=2),
        allergies,
        HeaderLine(f"{word('as_of', langs)} {printed_datetime(snapshot_time)}", 8),
    ], overflow


def _blank_header(pool: dict[str, str], langs) -> list[HeaderLine]:
    parts = [f"{word('downtime_mrn', langs)} {pool['mrn']}"] if "mrn" in pool else []
    if "encounter" in pool:
        parts.append(f"{word('encounter', langs)} {pool['encounter']}")
    if "accession" in pool:
        parts.append(f"{word('accession', langs)} {pool['accession']}")
    return [HeaderLine(" · ".join(parts), 10, True, max_lines=2)] if parts else []


class _Issuer:
    def __init__(self, kit: Kit, paper: str, langs: tuple[str, ...], actor: str, one_sided: bool = False):
        if paper not in PAPER_SIZES_MM:
            raise BadInput(f"unknown paper size {paper!r}", hint=f"use one of {', '.join(PAPER_SIZES_MM)}")
        self.kit, self.paper, self.langs, self.actor = kit, paper, langs, actor
        self.one_sided = one_sided  # `print --one-sided`: no duplex, no blank backs (a printer without duplex)
        self._layouts: dict[tuple, list[PageLayout]] = {}
        self._known_layouts: set[str] = set()

    def layouts(self, template: Template, context: dict[str, Any]) -> list[PageLayout]:
        key = (template.ref, json.dumps({k: v for k, v in context.items() if k != "day"}, sort_keys=True))
        if key not in self._layouts:
            self._layouts[key] = layout_form(template, self.paper, self.langs, context)
        return self._layouts[key]

    def start_batch(self, kind: str, ward: str | None, template: str | None, snapshot: dict | None,
                    out_path: Path) -> int:
        return self.kit.db["print_batches"].insert({
            "created_at": now_iso(), "kind": kind, "ward": ward, "template": template,
            "snapshot_id": snapshot["id"] if snapshot else None, "paper": self.paper,
            "lang": ",".join(self.langs), "out_path": str(out_path), "sheets": 0,
            "actor": self.actor}).last_pk

    def issue(self, batch_id: int, order: FormOrder, snapshot: dict | None) -> tuple[list[SheetToRender], list[dict]]:
        t = order.template
        blank = order.patient is None
        context: dict[str, Any] = {}
        if any(s.medications for s in t.sections):
            # The order's drug code and id ride along (when the census had them) so that what a MAR
            # line was printed for can be traced back to the hospital's order.
            context["medications"] = [
                {k: m[k] for k in ("line", "medication", "dose", "route", "frequency", "scheduled_times", "prn")}
                | {k: m[k] for k in ("drug_code", "drug_code_system", "order_id") if m.get(k)}
                for m in order.medications]
        if blank:
            context["blank_stock"] = True
            header: list[HeaderLine] = []
            # the identifiers line may wrap (fr/nl): the name and birth-date boxes go under it; the
            # numbers are not drawn yet, so measure with wide stand-ins of the same length
            size = PAPER_SIZES_MM[self.paper]
            kinds = set(t.pool_ids) | ({"mrn", "encounter"} if order.shared_ids is not None else set())
            stand_in = _blank_header({k: "M" * 11 for k in kinds}, self.langs)
            top = header_top(t, self.langs, size)
            fields_top = round(header_bottom(size, top, stand_in) + 1.0, 1)
            if fields_top > top + 7.5:
                context["blank_fields_top"] = fields_top
                context["body_top"] = max(HEADER_BOTTOM, float(-(-(fields_top + LABEL_H + 9.0 + 2.0) // 1)))
        else:
            header, overflow = _patient_header(order.patient, snapshot["imported_at"], self.langs, self.paper)
            if order.day is not None:
                day, k, n = order.day
                context["day"] = day
                header.insert(1, HeaderLine(f"{word('day', self.langs)} {k}/{n}: {printed_date(day)}", 10.5, True))
            if overflow:
                context["allergy_list"] = order.patient["allergies"]
            top = header_body_top(PAPER_SIZES_MM[self.paper], header_top(t, self.langs, PAPER_SIZES_MM[self.paper]),
                                  header)
            if top > HEADER_BOTTOM:
                context["body_top"] = top
        pages = self.layouts(t, context)
        sheet_ids = _fresh_sheet_ids(self.kit, len(pages))
        form_id = sheet_ids[0]
        pool: dict[str, str] = {}
        if blank:
            pool = dict(order.shared_ids or {})
            for kind in t.pool_ids:
                if kind not in pool:
                    pool[kind] = _allocate(self.kit, kind, form_id, batch_id)
            if order.shared_ids is not None:
                for kind in ("mrn", "encounter"):  # the set's first form allocates them for all
                    if kind not in order.shared_ids:
                        order.shared_ids[kind] = pool.get(kind) or _allocate(self.kit, kind, form_id, batch_id)
                        pool[kind] = order.shared_ids[kind]
            header = _blank_header(pool, self.langs)
        printed_at = now_iso()
        db = self.kit.db
        db["forms"].insert({
            "form_id": form_id, "batch_id": batch_id, "template": t.name, "version": t.version,
            "pages": len(pages), "patient_mrn": None if blank else order.patient["mrn"],
            "downtime_mrn": pool.get("mrn"),
            "encounter": pool.get("encounter") or (None if blank else order.patient.get("encounter")),
            "accession": pool.get("accession"),
            "ward": None if blank else order.patient["ward"], "bed": None if blank else order.patient["bed"],
            "snapshot_id": None if blank else snapshot["id"], "printed_at": printed_at,
            "context": json.dumps(context, ensure_ascii=False) if context else None})
        renders, listed = [], []
        for layout, sheet_id in zip(pages, sheet_ids):
            ghash = layout.geometry_hash()
            if ghash not in self._known_layouts:
                db.conn.execute(
                    "INSERT OR IGNORE INTO layouts (hash, template, version, page, pages, paper, geometry)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [ghash, t.name, t.version, layout.page, layout.pages, self.paper,
                     json.dumps(layout.geometry(), separators=(",", ":"))])
                self._known_layouts.add(ghash)
            db.conn.execute(
                "INSERT INTO sheets (sheet_id, form_id, template, version, page, pages, layout_hash,"
                " batch_id, printed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [sheet_id, form_id, t.name, t.version, layout.page, layout.pages, ghash, batch_id, printed_at])
            payload = SheetPayload(self.kit.kit_id, t.name, t.version, sheet_id, layout.page, layout.pages)
            items = place_header(layout.size_mm, layout.header_top, header)
            renders.append(SheetToRender(layout, sheet_id, payload.encode(self.kit.secret), items))
            listed.append({"sheet_id": sheet_id, "template": t.name, "version": t.version,
                           "page": layout.page, "pages": layout.pages, "form_id": form_id,
                           "patient_mrn": None if blank else order.patient["mrn"], **pool})
        return renders, listed

    def run(self, kind: str, orders: list[FormOrder], out_path: Path, *, ward: str | None = None,
            template: str | None = None, snapshot: dict | None = None,
            cover: Callable[[list[dict], bool], Callable] | None = None) -> PrintResult:
        db = self.kit.db
        outside_kit(self.kit.path, out_path, "a printed PDF")
        needed: dict[str, int] = {}
        sets: set[int] = set()
        for order in orders:
            if order.patient is None:
                pool_kinds = set(order.template.pool_ids)  # not `kind`: that is the batch's kind
                if order.shared_ids is not None:  # a new-patient set draws its MRN and encounter once
                    first = id(order.shared_ids) not in sets
                    sets.add(id(order.shared_ids))
                    pool_kinds = (pool_kinds - {"mrn", "encounter"}) | ({"mrn", "encounter"} if first else set())
                for pool_kind in pool_kinds:
                    needed[pool_kind] = needed.get(pool_kind, 0) + 1
        with db.conn:
            check_enough(self.kit, needed)
            batch_id = self.start_batch(kind, ward, template, snapshot, out_path)
            pages: list = []
            sheets: list[dict] = []
            for order in orders:
                renders, listed = self.issue(batch_id, order, snapshot)
                pages += renders
                sheets += listed
            if cover is not None:
                pages.insert(0, cover(sheets, two_sided(sheets) and not self.one_sided))
            db.conn.execute("UPDATE print_batches SET sheets = ? WHERE id = ?", [len(sheets), batch_id])
            append_audit(db, self.actor, "print", f"batch:{batch_id}", None,
                         {"kind": kind, "ward": ward, "template": template, "forms": len(orders),
                          "sheets": len(sheets), "out": str(out_path)})
            # the new forms' summaries ("printed, none returned"), in the print's transaction: the
            # reports see them at once and the first scan recomputes only what it read
            from ..reconcile.summary import refresh
            refresh(self.kit)
            title = f"fallbackkit {kind} {ward or template or ''}".strip()
            duplex = two_sided(sheets) and not self.one_sided
            write_pdf(out_path, pages, title, duplex=duplex)
        return PrintResult(out_path, batch_id, sheets, len(orders), ward, duplex)


def two_sided(sheets: list[dict]) -> bool:
    """A batch with a form of more than one page is printed double-sided (render.write_pdf: each
    form on its own sheet of paper, a two-page MAR front and back)."""
    return any(s["pages"] > 1 for s in sheets)


def _cover(kit: Kit, ward: str, snapshot: dict, patients: list[dict], paper: str, langs,
           titles: dict[str, str] | None = None) -> Callable[[list[dict]], Callable]:
    """The pack's cover, all in the chosen languages; forms named by their title in the first."""
    titles = titles or {}

    def make(sheets: list[dict], double_sided: bool) -> Callable:
        # the pack is named by its first sheet: a key every station shares (batch ids are local)
        code = CoverPayload(kit.kit_id, sheets[0]["sheet_id"], len(sheets)).encode(kit.secret) if sheets else None
        per_patient: dict[str, dict[str, int]] = {}
        for s in sheets:
            per_patient.setdefault(s["patient_mrn"], {})
            per_patient[s["patient_mrn"]][s["template"]] = per_patient[s["patient_mrn"]].get(s["template"], 0) + 1
        lines = [
            (f"{word('as_of', langs)} {printed_datetime(snapshot['imported_at'])} · "
             f"{word('printed', langs)} {printed_datetime(now_iso())}", False),
            (f"{len(patients)} {word('patients', langs)} · {len(sheets)} {word('sheets', langs)}"
             + (f" {word('on_paper', langs).format(n=sum(s['page'] == 1 and -(-s['pages'] // 2) for s in sheets))}"
                if double_sided else ""), True),
        ]
        lines += [(WORDS["not_a_form"][lang], False) for lang in dict.fromkeys(langs)]
        if double_sided:
            lines += [(WORDS["double_sided"][lang], True) for lang in dict.fromkeys(langs)]
        lines.append(("", False))
        changes = ward_changes(snapshot.get("changes"), ward)
        if changes:
            lines.append((f"{word('changes', langs)}:", True))
            lines += [(f"  {line}", False) for line in changes]
            lines.append(("", False))
        new = {c["mrn"] for c in (snapshot.get("changes") or {}).get("admitted", [])}
        for p in patients:
            counts = per_patient.get(p["mrn"], {})
            detail = ", ".join(f"{titles.get(name, name)} {n}" for name, n in counts.items())
            lines.append((f"{word('bed', langs)} {p['bed']:>4}   {p['last_name'].upper()}, {p['first_name']}"
                          f"   MRN {p['mrn']}   {printed_date(p['birth_date'])}"
                          + (f"   ({word('new', langs)})" if p["mrn"] in new else ""), True))
            lines.append((f"        {sum(counts.values())} {word('sheets', langs)}: {detail}", False))
        title = f"{word('ward', langs)} {ward} — {word('pack', langs)}"
        return lambda c: draw_cover(c, title, lines, PAPER_SIZES_MM[paper], code, word("cover", langs))
    return make


def ward_changes(changes: dict[str, list[dict]] | None, ward: str) -> list[str]:
    """The differences from the previous snapshot that concern one ward, as the cover sheet lists them."""
    if not changes:
        return []
    lines = []
    for p in changes["admitted"]:
        if p["ward"] == ward:
            lines.append(f"New: bed {p['bed']}: {p['name']} (MRN {p['mrn']})")
    for p in changes["moved"]:
        if p["ward"] == ward and p["from_ward"] == ward:
            lines.append(f"Moved: bed {p['from_bed']} -> bed {p['bed']}: {p['name']} (MRN {p['mrn']})")
        elif p["ward"] == ward:
            lines.append(f"Moved in: from {p['from_ward']} bed {p['from_bed']} -> bed {p['bed']}: {p['name']}"
                         f" (MRN {p['mrn']})")
        elif p["from_ward"] == ward:
            lines.append(f"Moved out: bed {p['from_bed']} -> {p['ward']} bed {p['bed']}: {p['name']}"
                         f" (MRN {p['mrn']})")
    for p in changes["discharged"]:
        if p["ward"] == ward:
            lines.append(f"Left: bed {p['bed']}: {p['name']} (MRN {p['mrn']}): not in this census")
    for p in changes["allergies"]:
        if p["ward"] == ward:
            lines.append(f"Allergies changed: bed {p['bed']}: {p['name']}: {p['before'] or 'none'} -> {p['after'] or 'none'}")
    return lines


def print_ward(kit: Kit, ward: str, out_path: Path | str, paper: str = "a4", langs=("en",),
               actor: str = "system", days: list[str] | None = None, one_sided: bool = False) -> PrintResult:
    """A ward pack; with days (outage_days), one MAR per patient per day, each dated."""
    snapshot = census.current_snapshot(kit)
    patients = census.ward_patients(kit, snapshot["id"], ward)
    if not patients:
        known = census.wards(kit, snapshot["id"])
        raise NotFound(f"ward {ward!r} has no patients in the census snapshot of {snapshot['imported_at']}",
                       hint=f"wards in the census: {', '.join(known) or 'none'}")
    templates = _patient_templates(kit_templates(kit))
    orders = []
    for p in patients:
        meds = census.medications_of(kit, snapshot["id"], p["mrn"])
        for t in templates:
            orders += _daily_orders(t, lambda t_, day=None: FormOrder(t_, p, meds, day=day), days)
    issuer = _Issuer(kit, paper, tuple(langs), actor, one_sided)
    return issuer.run("ward", orders, Path(out_path), ward=ward, snapshot=snapshot,
                      cover=_cover(kit, ward, snapshot, patients, paper, tuple(langs),
                                   {t.name: t.title[tuple(langs)[0]] for t in templates}))


def print_all_wards(kit: Kit, out_dir: Path | str, paper: str = "a4", langs=("en",),
                    actor: str = "system", days: list[str] | None = None,
                    one_sided: bool = False) -> list[PrintResult]:
    snapshot = census.current_snapshot(kit)
    out_dir = outside_kit(kit.path, out_dir, "a folder of ward packs")
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"{out_dir} is a file", hint="--ward all writes one PDF per ward: give a directory")
    wards = census.wards(kit, snapshot["id"])
    if not wards:
        raise NotFound("the census snapshot has no wards")
    # every pack's name is claimed before the first is printed: two wards never share one file
    outputs = OutputFiles()
    outputs.claim(out_dir / PACKS_MARKER)
    named = [(ward, outputs.claim(out_dir / file_name("ward-", ward, ".pdf"), f"ward {ward}")) for ward in wards]
    results = [print_ward(kit, ward, path, paper, langs, actor, days, one_sided) for ward, path in named]
    _write_marker(kit, out_dir, snapshot, results)
    return results


PACKS_MARKER = ".fallbackkit-packs.json"


def _write_marker(kit: Kit, out_dir: Path, snapshot: dict, results: list[PrintResult]) -> None:
    """A folder of packs says which kit wrote it and which files are its own: `--keep` prunes only those."""
    marker = {"kit_id": kit.kit_id, "snapshot_id": snapshot["id"], "printed_at": now_iso(),
              "batches": [r.batch_id for r in results], "files": [r.out_path.name for r in results]}
    tmp = out_dir / (PACKS_MARKER + ".tmp")
    tmp.write_text(json.dumps(marker, indent=2))
    os.chmod(tmp, 0o600)
    os.replace(tmp, out_dir / PACKS_MARKER)


def packs_unchanged(kit: Kit, paper: str = "a4", langs=("en",)) -> dict[str, Any] | None:
    """Whether every ward of the current snapshot was already printed (same paper and languages) and
    nothing printable changed since: no medication stopped between then and today. A scheduled
    refresh then prints nothing, so no new sheet ids are handed out."""
    snapshot = census.current_snapshot(kit)
    lang = ",".join(langs)
    rows = kit.db.conn.execute(
        "SELECT ward, out_path, created_at FROM print_batches WHERE kind = 'ward' AND snapshot_id = ?"
        " AND paper = ? AND lang = ? ORDER BY id", [snapshot["id"], paper, lang]).fetchall()
    printed = {r[0]: (r[1], r[2]) for r in rows}
    wards = census.wards(kit, snapshot["id"])
    if not wards or any(w not in printed or not Path(printed[w][0]).is_file() for w in wards):
        return None  # a ward not printed yet, or its pack was deleted since
    first_day = min(printed[w][1] for w in wards)[:10]
    stopped = kit.db.conn.execute(
        "SELECT COUNT(*) FROM medications WHERE snapshot_id = ? AND stop_date >= ? AND stop_date < ?",
        [snapshot["id"], first_day, _dt.date.today().isoformat()]).fetchone()[0]
    if stopped:
        return None
    folders = sorted({str(Path(printed[w][0]).parent) for w in wards})
    return {"snapshot_id": snapshot["id"], "imported_at": snapshot["imported_at"], "folders": folders}


def prune_packs(kit: Kit, out_dir: Path | str, keep: int) -> list[Path]:
    """Delete the oldest pack folders beside OUT_DIR written by this kit, keeping the KEEP newest
    (OUT_DIR included). Only files the marker lists are removed; a folder holding anything else stays."""
    if keep < 1:
        raise BadInput(f"--keep {keep}: keep at least 1 pack folder")
    out_dir = Path(out_dir)
    found = []
    for folder in out_dir.parent.iterdir() if out_dir.parent.is_dir() else []:
        marker = folder / PACKS_MARKER
        if not folder.is_dir() or folder.is_symlink() or not marker.is_file():
            continue
        try:
            data = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        if data.get("kit_id") == kit.kit_id:
            found.append((str(data.get("printed_at", "")), folder.name, folder, data))
    found.sort(reverse=True)
    removed = []
    for _, _, folder, data in found[keep:]:
        if folder.resolve() == out_dir.resolve():
            continue
        for name in data.get("files", []):
            target = folder / Path(name).name
            if target.is_file() and not target.is_symlink():
                target.unlink()
        (folder / PACKS_MARKER).unlink()
        try:
            folder.rmdir()
        except OSError:
            pass  # something else is in there: left as it is
        removed.append(folder)
    return removed


def print_blank(kit: Kit, template_ref: str, count: int, out_path: Path | str, paper: str = "a4",
                langs=("en",), actor: str = "system", one_sided: bool = False) -> PrintResult:
    if count < 1 or count > 100_000:
        raise BadInput(f"--blank {count}: give a number of forms from 1 to 100000")
    template = find_template(kit_templates(kit), template_ref)
    orders = [FormOrder(template) for _ in range(count)]
    return _Issuer(kit, paper, tuple(langs), actor, one_sided).run("blank", orders, Path(out_path), template=template.ref)


def print_blank_set(kit: Kit, count: int, out_path: Path | str, paper: str = "a4", langs=("en",),
                    actor: str = "system", one_sided: bool = False) -> PrintResult:
    """N new-patient sets: every patient form (registration, lab request, MAR, vitals), all with the
    same downtime MRN and encounter, so one new patient does not end up with four numbers."""
    if count < 1 or count > 10_000:
        raise BadInput(f"--blank-set {count}: give a number of sets from 1 to 10000")
    templates = _patient_templates(kit_templates(kit))
    orders = []
    for _ in range(count):
        shared: dict[str, str] = {}
        orders += [FormOrder(t, shared_ids=shared) for t in templates]
    return _Issuer(kit, paper, tuple(langs), actor, one_sided).run("blank-set", orders, Path(out_path))


def print_patient(kit: Kit, template_ref: str, mrn: str, out_path: Path | str, paper: str = "a4",
                  langs=("en",), actor: str = "system", days: list[str] | None = None,
                  one_sided: bool = False) -> PrintResult:
    template = find_template(kit_templates(kit), template_ref)
    if not template.patient_bound:
        raise BadInput(f"template {template.ref} is not bound to a patient", hint="print it with --blank N")
    snapshot = census.current_snapshot(kit)
    p = census.patient(kit, snapshot["id"], mrn)
    meds = census.medications_of(kit, snapshot["id"], mrn)
    orders = _daily_orders(template, lambda t_, day=None: FormOrder(t_, p, meds, day=day), days)
    return _Issuer(kit, paper, tuple(langs), actor, one_sided).run(
        "patient", orders, Path(out_path), ward=p["ward"],
        template=template.ref, snapshot=snapshot)


def sheet_geometry(kit: Kit, sheet_id: str) -> dict[str, Any]:
    """The geometry a reader needs for one printed sheet (`sheets show`)."""
    sheet_id = ids.normalize(sheet_id)
    row = kit.db.execute(
        "SELECT s.sheet_id, s.form_id, s.template, s.version, s.page, s.pages, l.geometry, s.printed_at"
        " FROM sheets s JOIN layouts l ON l.hash = s.layout_hash WHERE s.sheet_id = ?", [sheet_id]).fetchone()
    if row is None:
        hint = "the check character does not match: re-read the id" if not ids.is_valid(sheet_id, 8) \
            else "was it printed by another kit?"
        raise NotFound(f"no sheet {sheet_id} in this kit", hint=hint)
    geometry = json.loads(row[6])
    return {"sheet_id": row[0], "form_id": row[1], "template": row[2], "version": row[3], "page": row[4],
            "pages": row[5], "printed_at": row[7], "page_size_mm": geometry["page_size_mm"],
            "marks_mm": geometry["marks_mm"], "qr_mm": geometry["qr_mm"], "fields": geometry["fields"]}
