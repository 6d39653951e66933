"""FHIR R4 transaction bundles for re-entry into the hospital record system: one per patient.

Every entry is conditional on a deterministic identifier: a conditional update (PUT
`Type?identifier=system|value`, URL-encoded) for what the paper and the clerks' decisions say, so a
bundle sent twice creates nothing the second time and a correction replaces the value sent before;
a conditional create (`ifNoneExist`) for a real patient, whose record the kit never overwrites. Only settled values are exported (machine-accepted or
decided by a person, and agreeing across captures); an item with anything still unsettled is
left out whole and listed in `pending.json` with the reason, so nobody re-enters half a record.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections import ChainMap, Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator
from urllib.parse import quote

from .. import jsontext
from ..errors import BadInput
from ..store.exports import content_hash, last_sent_item, last_sent_of_forms, record_export_if_writable
from ..store.kit import Kit, default_actor, now_iso
from ..store.settings import check_zone, get_setting, stored_setting, system_zone
from ..files import StagedFiles, file_name, outside_kit, sweep_leftovers
from ..templates import values as paper_values
from ..templates.model import Template
from ..templates.semantics import ItemRule
from .bundles import as_batch, split_transaction
from .tabular import _write_json
from .collect import FORMS_PER_BATCH, Form, FormLoader, Store, load_census, parse_since, snapshot, touched_since

NS = uuid.UUID("8f0d7f3e-4c1e-5b8a-9a51-6b7f2a0c3d11")
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"

# resources a form's items share (one per patient, encounter, page, target); every other resource of
# an item is the item's own, recorded per item in the export record and withdrawable
SHARED_TYPES = ("Patient", "Encounter", "DocumentReference", "Provenance", "Binary", "Practitioner")
ENTERED_IN_ERROR_NOTE = ("Observation", "MedicationAdministration", "ServiceRequest", "Specimen",
                         "AllergyIntolerance")

PAGE_IMAGES = ("binary", "inline", "none")  # how the scanned page travels: a Binary, attachment.data, not at all

PRIORITY = {"routine": "routine", "urgent": "urgent", "stat": "stat"}
GENDER = {"female": "female", "male": "male", "other": "other", "unknown": "unknown", "f": "female", "m": "male",
          "x": "other"}


def local_codes(kind: str) -> str:
    """The kit's own code system for one kind of code (lab tests, specimen types, AVPU levels...):
    one URI per kind, the same for every kit, next to the standard codes the template gives."""
    return f"urn:fallbackkit:codes:{kind}"


class Unsettled(Exception):
    """An item cannot be exported yet; the message says why."""


# --- values from the paper ----------------------------------------------------------------------
def _unsettled(parse, value: Any):
    try:
        return parse(value)
    except paper_values.ValueProblem as exc:
        raise Unsettled(str(exc)) from None


def parse_date(value: Any) -> _dt.date:
    return _unsettled(paper_values.parse_date, value)


def _localize(moment: _dt.datetime, tz: str | None) -> _dt.datetime:
    """A wall-clock time from the paper, in the kit's zone (settings 'tz'; default: this computer's).
    A time a DST change skips or repeats is Unsettled: a person says which instant was meant."""
    if moment.tzinfo:
        return moment
    return _unsettled(lambda m: paper_values.to_instant(m, tz or system_zone()), moment)


def zone_ok(tz: str | None) -> None:
    if tz:
        check_zone(tz)


def care_time(day: Any, time: Any, tz: str | None = None) -> str:
    """Date on the sheet + time in a box -> FHIR dateTime in the kit's local time zone."""
    return _localize(_unsettled(lambda d: paper_values.combine(d, time), day), tz).isoformat(timespec="seconds")


def parse_datetime(value: Any, tz: str | None = None) -> str:
    return _localize(_unsettled(paper_values.parse_datetime, value), tz).isoformat(timespec="seconds")


def parse_number(value: Any) -> float | int:
    return _unsettled(paper_values.parse_number, value)


def instant(text: str | None) -> str | None:
    if not text:
        return None
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.astimezone()).isoformat(timespec="seconds")


NOTED = ("Observation", "MedicationAdministration", "ServiceRequest")  # clinical resources that take a note


# --- building blocks ----------------------------------------------------------------------------
@dataclass
class Item:
    """One worklist item of a form (a vitals column, a MAR slot, a lab request, a registration),
    with the template rule that says what it becomes in FHIR."""
    key: str
    form: Form
    fields: list[str]
    kind: str
    rule: ItemRule
    template: Template
    remarks: list = field(default_factory=list)  # the worklist item's, e.g. "c3.avpu: corrected on paper"


@dataclass
class PatientBundle:
    key: str
    entries: Any = field(default_factory=list)   # a list, or the Entries of a patient's written bundle
    urls: Any = field(default_factory=dict)      # (type, fullUrl) -> fullUrl: a dict, or a ChainMap while staged
    patient_url: str | None = None


class Entries:
    """A patient's bundle entries as they are committed: held (to be cut into parts or made a batch)
    or written to the bundle file as they come (`start` opens it at the first entry), so that an
    export holds no patient's bundle whole (issue 16: one patient's bundle can hold 100,000 entries).
    What is written is `json.dumps(bundle, indent=1, ensure_ascii=False)` of the whole bundle."""

    def __init__(self, head: Callable[[], dict[str, Any]], start: Callable[[], IO[str]] | None):
        self.head, self.start = head, start
        self.held: list[dict[str, Any]] | None = [] if start is None else None
        self.fh: IO[str] | None = None
        self.count = 0
        self.by_type: Counter = Counter()
        self.patients: list[dict[str, Any]] = []   # the Patient entries: recorded as sent, per patient

    def append(self, entry: dict[str, Any]) -> None:
        rtype = entry["resource"]["resourceType"]
        self.count += 1
        self.by_type[rtype] += 1
        if rtype == "Patient":
            self.patients.append({"request": entry["request"], "resource": entry["resource"]})
        if self.held is not None:
            self.held.append(entry)
            return
        if self.fh is None:
            self.fh = self.start()
            head = jsontext.dumps(self.head(), indent=1)
            self.fh.write(head[:-2] + ',\n "entry": [\n  ')
        else:
            self.fh.write(",\n  ")
        self.fh.write(jsontext.dumps(entry, indent=1, level=2))

    def extend(self, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            self.append(entry)

    def finish(self) -> IO[str] | None:
        """The end of the written bundle; its file handle (None when held)."""
        if self.fh is not None:
            self.fh.write("\n ]\n}")
        return self.fh


@dataclass
class PatientForms:
    """The forms of one patient in this export (its ward), as printed: what the patient's Patient
    and Encounter resources are made of is looked up here, not across the whole kit."""
    key: str
    forms: list[tuple[str, str, int]] = field(default_factory=list)   # (form id, template, version)
    downtime: set[str] = field(default_factory=set)
    registration: Any = ...      # the first registration form with captures (... = not looked up yet)
    resources: dict[Any, dict[str, Any]] = field(default_factory=dict)  # (real MRN, downtime MRNs) -> Patient
    withdrawals: list[tuple] = field(default_factory=list)


class BundleBuilder:
    def __init__(self, kit_id: str, mrn_system: str | None = None, encounter_system: str | None = None,
                 accession_system: str | None = None):
        self.base = f"urn:fallbackkit:{kit_id}"
        self.mrn_system = mrn_system or f"{self.base}:mrn"
        self.encounter_system = encounter_system or f"{self.base}:encounter"
        self.accession_system = accession_system or f"{self.base}:downtime-accession"  # as before: re-sends stay idempotent

    def system(self, name: str) -> str:
        return f"{self.base}:{name}"

    def full_url(self, rtype: str, system: str, value: str) -> str:
        return "urn:uuid:" + str(uuid.uuid5(NS, f"{rtype}|{system}|{value}"))

    def add(self, bundle: PatientBundle, resource: dict[str, Any], system: str, value: str,
            search: str = "identifier", create_only: bool = False) -> str:
        """Add a resource under its deterministic identifier.

        Content that can change after a first send (a correction, a later decision) is sent as a
        conditional update (PUT Type?identifier=system|value): the server creates it the first
        time and replaces it with the corrected content afterwards, so a re-send is idempotent and
        a correction lands. create_only keeps a conditional create (POST with ifNoneExist) for
        resources the kit must never overwrite: the hospital's own Patient record.
        """
        rtype = resource["resourceType"]
        url = self.full_url(rtype, system, value)
        if (rtype, url) in bundle.urls:
            return url
        if search == "identifier":
            identifiers = resource.setdefault("identifier", [])
            if not any(i.get("system") == system and i.get("value") == value for i in identifiers):
                identifiers.insert(0, {"system": system, "value": value})
        else:
            resource["meta"] = {"tag": [{"system": system, "code": value}]}
        bundle.urls[(rtype, url)] = url
        query = f"{search}={quote(f'{system}|{value}', safe='')}"
        request = ({"method": "POST", "url": rtype, "ifNoneExist": query} if create_only
                   else {"method": "PUT", "url": f"{rtype}?{query}"})
        bundle.entries.append({"fullUrl": url, "resource": resource, "request": request})
        return url


def _settled(form: Form, names: list[str]) -> dict[str, Any]:
    """Values of the named fields; raises Unsettled naming every field that is not settled."""
    bad = [f"{n} ({form.fields[n].why})" for n in names if n in form.fields and not form.fields[n].settled]
    if bad:
        raise Unsettled("not settled: " + ", ".join(bad))
    return {n: form.value(n) for n in names}


def _agent(role: str, who: str) -> dict[str, Any]:
    return {"type": {"coding": [{"system": PARTICIPANT, "code": role}]}, "who": {"display": who}}


class FhirExport:
    def __init__(self, kit: Kit, ward: str | None = None, since: str | None = None,
                 mrn_system: str | None = None, skip_entered: bool = False, tz: str | None = None,
                 page_images: str = "binary"):
        zone_ok(tz)
        if page_images not in PAGE_IMAGES:
            raise BadInput(f"--page-images {page_images!r}: one of {', '.join(PAGE_IMAGES)}")
        self.page_images = page_images
        self.page_image_problems: list[dict[str, Any]] = []  # pages whose image could not be made
        self.kit = kit
        self.tz = tz or get_setting(kit, "tz")  # the flag overrides the kit setting
        mrn_system = mrn_system or stored_setting(kit, "mrn_system")
        encounter_system = stored_setting(kit, "encounter_system")
        self.national_number_system = get_setting(kit, "national_number_system")
        self.identity_notes = []
        if not mrn_system:
            self.identity_notes.append(
                "no MRN identifier system is set: patients will be CREATED on the receiving server, not matched"
                " to its records (fallbackkit settings set mrn_system URI, or --mrn-system)")
        if not encounter_system:
            self.identity_notes.append(
                "no encounter identifier system is set: encounters will be CREATED on the receiving server, not"
                " matched (fallbackkit settings set encounter_system URI)")
        from ..generate import kit_templates
        self.templates: dict[str, Template] = kit_templates(kit)
        self.skip_entered = skip_entered
        self.ward = ward
        self.marks = {item: status for item, status in kit.db.conn.execute(
            "SELECT item_id, status FROM worklist_marks ORDER BY id")}
        self.census = load_census(kit.db.conn)
        self.store = Store(kit.kit_id, [], [], {}, {}, {}, self.census)  # the batch of forms being exported
        # --since LAST: what differs from what the export record says was last sent (content, not clock)
        self.since_last = bool(since) and since.strip().upper() == "LAST"
        self.since = None if self.since_last else parse_since(since, self.tz)
        self.sent: dict[str, dict[str, Any]] = {}     # item id -> last sent, for the items of this batch
        self._sent_by_form: dict[str, list[str]] = {}
        self._sent_patients: dict[str, dict[str, Any] | None] = {}
        self.records: dict[str, dict[str, Any]] = {}   # item id -> what this export sends for it (this form)
        self.fields_of: dict[str, list[str]] = {}     # fullUrl -> the fields a resource comes from
        self.link_patches: dict[str, list[str]] = {}  # real MRN -> downtime MRNs linked to it
        self.b = BundleBuilder(kit.kit_id, mrn_system, encounter_system, stored_setting(kit, "accession_system"))
        self.bundles: dict[str, PatientBundle] = {}   # the patient being exported
        self.patients: dict[str, PatientForms] = {}
        self.counts: Counter = Counter()   # pending, skipped, unchanged, withdrawn, exported
        self.out: Any = None
        # what run() gathers in memory (small kits, tests); export_fhir writes them as they come
        self.pending: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []
        self.withdrawn: list[dict[str, Any]] = []
        self.exported: list[dict[str, Any]] = []

    # -- patients and encounters --
    def patient(self, bundle: PatientBundle, form: Form) -> str:
        key = form.patient_key
        if bundle.patient_url:
            return bundle.patient_url
        real = form.real_mrn
        downtime = sorted(self.patients[key].downtime)
        cached = self.patients[key].resources.get(real)
        if cached is None:
            cached = self.patients[key].resources[real] = self._patient_resource(key, real, downtime)
        resource = json.loads(json.dumps(cached))  # a copy: adding it to a bundle may change it
        if real:
            url = self.b.add(bundle, resource, self.b.mrn_system, real, create_only=True)
            for d in downtime:
                # the hospital's record is never overwritten: the downtime identifier is added by a
                # conditional PATCH in link-<MRN>.json; a downtime-only Patient sent before is retired
                if d not in self.link_patches.setdefault(key, []):
                    self.link_patches[key].append(d)
                if self._sent_patient(d) is not None:
                    self._retire_downtime_patient(bundle, d, real, url)
        else:
            url = self.b.add(bundle, resource, self.b.system("downtime-mrn"), key)
        bundle.patient_url = url
        return url

    def _patient_resource(self, key: str, real: str | None, downtime: list[str]) -> dict[str, Any]:
        """The Patient resource of KEY (the census's, else what the patient's paper says)."""
        identifiers = []
        if real:
            identifiers.append({"use": "official", "type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "system": self.b.mrn_system, "value": real})
        for d in downtime:
            identifiers.append({"use": "temp", "system": self.b.system("downtime-mrn"), "value": d})
        resource: dict[str, Any] = {"resourceType": "Patient", "identifier": identifiers}
        census = self.store.census.get(real) if real else None
        if census:
            resource["name"] = [{"family": census["last_name"], "given": [census["first_name"]]}]
            resource["birthDate"] = census["birth_date"]
            if census.get("sex") and census["sex"].lower() in GENDER:
                resource["gender"] = GENDER[census["sex"].lower()]
            if census.get("national_number"):
                # a wrong check digit would attach the record to somebody else: left out, never guessed
                digits = paper_values.national_number_or_none(census["national_number"])
                if digits:
                    identifiers.append({"use": "official", "system": self.national_number_system, "value": digits})
        else:
            self._demographics_from_paper(key, resource)
        return resource

    def _sent_patient(self, downtime: str) -> dict[str, Any] | None:
        """What the export record says was last sent as the patient of a downtime MRN."""
        if downtime not in self._sent_patients:
            self._sent_patients[downtime] = last_sent_item(self.kit.db.conn, f"patient:{downtime}")
        return self._sent_patients[downtime]

    def _patient_forms(self, key: str, wanted: Callable[[Template | None], bool]) -> Iterator[Form]:
        """The forms of patient KEY whose template is wanted, as printed, loaded a few at a time."""
        group = self.patients.get(key)
        ids = [fid for fid, name, version in (group.forms if group else ())
               if wanted(self.templates.get(f"{name}@{version}") or self.templates.get(name))]
        step = min(50, FORMS_PER_BATCH)  # most lookups stop at the first form
        for start in range(0, len(ids), step):
            yield from self.loader.store(ids[start:start + step]).forms

    def _is_registration(self, t: Template | None) -> bool:
        return t is None or any(r.fhir == "registration" for r in t.reentry)

    def _not_real(self, real: str) -> str:
        return f"identifier:not={quote(f'{self.b.mrn_system}|{real}', safe='')}"

    def _retire_downtime_patient(self, bundle: PatientBundle, downtime: str, real: str, real_url: str) -> None:
        """The downtime-only Patient an earlier export sent: as it was sent, inactive, with a
        `replaced-by` link to the real patient. Its condition leaves the real patient out (which
        carries the downtime identifier too once it is linked)."""
        sent = next((r["resource"] for r in self._sent_patient(downtime)["resources"]
                     if any(i.get("value") == downtime for i in r["resource"].get("identifier", []))), None)
        if sent is None:  # recorded, but not as a downtime-only Patient: nothing to retire
            return
        resource = {**json.loads(json.dumps(sent)), "active": False,
                    "link": [{"other": {"reference": real_url}, "type": "replaced-by"}]}
        system = self.b.system("downtime-mrn")
        url = "urn:uuid:" + str(uuid.uuid5(NS, f"retired|{system}|{downtime}"))
        if ("Patient", url) in bundle.urls:
            return
        bundle.urls[("Patient", url)] = url
        query = f"identifier={quote(f'{system}|{downtime}', safe='')}&{self._not_real(real)}"
        bundle.entries.append({"fullUrl": url, "resource": resource,
                               "request": {"method": "PUT", "url": f"Patient?{query}"}})

    def link_bundle(self, key: str) -> dict[str, Any]:
        """A batch (not a transaction) of conditional PATCHes that add each linked downtime MRN to
        the hospital's Patient without replacing anything it holds. The condition
        `identifier=<real>&identifier:not=<downtime>` matches only while the identifier is missing:
        a re-send answers that entry with a 4xx 'no match' (nothing to do), which in a batch leaves
        the other entries alone (in a transaction it would refuse them all)."""
        entries = []
        for d in self.link_patches[key]:
            patch = [{"op": "add", "path": "/identifier/-",
                      "value": {"use": "temp", "system": self.b.system("downtime-mrn"), "value": d}}]
            query = (f"identifier={quote(f'{self.b.mrn_system}|{key}', safe='')}"
                     f"&identifier:not={quote(self.b.system('downtime-mrn') + '|' + d, safe='')}")
            entries.append({"fullUrl": "urn:uuid:" + str(uuid.uuid5(NS, f"link|{key}|{d}")),
                            "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                                         "data": base64.b64encode(json.dumps(patch).encode()).decode()},
                            "request": {"method": "PATCH", "url": f"Patient?{query}"}})
        return {"resourceType": "Bundle", "type": "batch",
                "identifier": {"system": self.b.system("link-bundle"), "value": key},
                "timestamp": now_iso(), "entry": entries}

    def _demographics_from_paper(self, key: str, resource: dict[str, Any]) -> None:
        """A patient known only by a downtime MRN: name and birth date from a settled registration form."""
        for form in self._patient_forms(key, self._is_registration):
            roles = self.registration_roles(form)
            if form.patient_key != key or roles is None:
                continue
            wanted = {r: roles.get(r) for r in ("family", "given", "birth_date", "gender")}
            try:
                got = _settled(form, [n for n in wanted.values() if n])
            except Unsettled:
                continue
            v = {r: got.get(n) if n else None for r, n in wanted.items()}
            if v["family"] or v["given"]:
                resource["name"] = [{k: x for k, x in (("family", v["family"]),
                                                       ("given", [v["given"]] if v["given"] else None))
                                     if x}]
            if v["birth_date"]:
                try:
                    resource["birthDate"] = parse_date(v["birth_date"]).isoformat()
                except Unsettled:
                    pass
            if v["gender"] in GENDER:
                resource["gender"] = GENDER[v["gender"]]
            extra = {r: form.value(roles[r]) if roles.get(r) else None for r in ("national_number", "address", "phone")}
            digits = paper_values.national_number_or_none(extra["national_number"]) if extra["national_number"] else None
            if digits:  # a wrong check digit would attach the record to somebody else: left out
                resource["identifier"].append({"use": "official", "system": self.national_number_system,
                                               "value": digits})
            if extra["address"]:
                resource["address"] = [{"text": str(extra["address"])}]
            if extra["phone"]:
                resource["telecom"] = [{"system": "phone", "value": str(extra["phone"])}]
            return
        # no registration form: the name and birth date handwritten on blank stock, when settled
        for form in self._patient_forms(key, lambda t: True):  # (blank stock: a field of the layout)
            if form.patient_key != key or "patient_name" not in form.fields:
                continue
            try:
                v = _settled(form, ["patient_name", "patient_birth_date"])
            except Unsettled:
                continue
            if v["patient_name"] and "name" not in resource:
                resource["name"] = [{"text": str(v["patient_name"])}]
            if v["patient_birth_date"] and "birthDate" not in resource:
                try:
                    resource["birthDate"] = parse_date(v["patient_birth_date"]).isoformat()
                except Unsettled:
                    pass

    def encounter(self, bundle: PatientBundle, form: Form, patient_url: str) -> str:
        number = form.row["encounter"]
        census = self.store.census.get(form.real_mrn or "")
        if not number and census and census.get("encounter"):
            number = census["encounter"]  # blank stock linked to a census patient: the admission it belongs to
        if number:
            system = self.b.system("downtime-encounter") if number.startswith("DTE") else self.b.encounter_system
        else:
            number, system = bundle.key, self.b.system("downtime-episode")
        resource = {"resourceType": "Encounter", "status": "unknown",
                    "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
                    "subject": {"reference": patient_url}}
        start = (self.registration_roles(form) or {}).get("encounter_start")
        if start:
            try:
                arrival = _settled(form, [start])[start]
                if arrival:
                    resource["period"] = {"start": parse_datetime(arrival, self.tz)}
            except Unsettled:
                pass
        self._admission(resource, form)
        return self.b.add(bundle, resource, system, number)

    def _registration_form(self, form: Form) -> Form | None:
        """The registration form of this form's patient (the form itself when it is one)."""
        if self.registration_roles(form) is not None:
            return form
        group = self.patients.get(form.patient_key or "")
        if group is None:
            return None
        if group.registration is ...:
            group.registration = next((f for f in self._patient_forms(group.key, self._is_registration)
                                       if f.patient_key == form.patient_key and f.captures
                                       and self.registration_roles(f) is not None), None)
        return group.registration

    def _admission(self, resource: dict[str, Any], form: Form) -> None:
        """What a registration form says of the admission: attending physician, reason, admission
        type (priority, a day case's class) and arrival (admission source), with the template's codes.
        A field still unsettled is left out now; the next export sends it (the Encounter is a PUT)."""
        reg = self._registration_form(form)
        if reg is None:
            return
        roles, t = self.registration_roles(reg), self.template(reg)
        value = lambda r: reg.value(roles[r]) if roles.get(r) else None  # noqa: E731
        if value("attending"):
            resource["participant"] = [{"type": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "ATND",
                "display": "attender"}]}], "individual": {"display": str(value("attending"))}}]
        if value("reason"):
            resource["reasonCode"] = [{"text": str(value("reason"))}]
        kind = value("admission_type")
        if kind:
            codings = t.fhir.codings(roles["admission_type"], kind)
            label = self.option_label(reg, roles["admission_type"], kind)
            priority = [c for c in codings if c["system"].endswith("/v3-ActPriority")]
            resource["priority"] = {"coding": [{"system": local_codes("admission-type"), "code": kind,
                                                "display": label}, *priority], "text": label}
            klass = next((c for c in codings if c["system"] == ACT_CODE), None)
            if klass:
                resource["class"] = klass
        arrival = value("arrival_mode")
        if arrival:
            label = self.option_label(reg, roles["arrival_mode"], arrival)
            resource["hospitalization"] = {"admitSource": {
                "coding": [{"system": local_codes("arrival-mode"), "code": arrival, "display": label},
                           *t.fhir.codings(roles["arrival_mode"], arrival)], "text": f"arrival: {label}"}}

    # -- source images and provenance --
    def documents(self, bundle: PatientBundle, form: Form, patient_url: str, enc_url: str,
                  fields: list[str]) -> list[str]:
        capture_ids = sorted({r.capture_id for n in fields if n in form.fields for r in form.fields[n].readings})
        urls = []
        for cid in capture_ids:
            cap = self.store.captures[cid]
            urls.append(self.document(bundle, cap, patient_url, enc_url, form))
        return urls

    def document(self, bundle: PatientBundle, cap: dict[str, Any], patient_url: str, enc_url: str,
                 form: Form) -> str:
        """The scanned page itself: its page image as a Binary (or inline attachment.data), with
        content type, size and SHA-1. Nothing of the downtime PC leaves the kit: no file path, no
        kit-relative path; the original file is named by its SHA-256 only."""
        attachment: dict[str, Any] = {"title": f"sheet {cap['sheet_id']} page {cap['page']}/{cap['pages']}"}
        value = f"{cap['file_sha256']}:{cap['page_index']}:{cap.get('source') or 'scan'}"
        data = self.page_image(cap)
        if data is not None:
            attachment["contentType"] = "image/png"  # the page image is a PNG (scan/pageview.py)
            attachment["size"] = len(data)
            attachment["hash"] = base64.b64encode(hashlib.sha1(data).digest()).decode()
            encoded = base64.b64encode(data).decode()
            if self.page_images == "inline":
                attachment["data"] = encoded
            elif self.page_images == "binary":
                attachment["url"] = self.binary(bundle, value, attachment["contentType"], encoded)
        else:
            attachment["title"] += " (no page image kept in the kit)"
        t = self.template(form)
        doc_code = t.document if t else None
        doc_type: dict[str, Any] = {"text": f"Scanned downtime form page ({form.template})"}
        if doc_code:
            doc_type["coding"] = [doc_code]
        resource = {"resourceType": "DocumentReference", "status": "current",
                    "type": doc_type,
                    "subject": {"reference": patient_url},
                    "description": f"{form.template} form {form.form_id}, sheet {cap['sheet_id']}, "
                                   f"page {cap['page']} of {cap['pages']}; page {cap['page_index']} of scanned "
                                   f"file sha256:{cap['file_sha256'][:16]}",
                    "content": [{"attachment": attachment}],
                    "context": {"encounter": [{"reference": enc_url}]}}
        date = instant(cap.get("captured_at"))
        if date:
            resource["date"] = date
        return self.b.add(bundle, resource, self.b.system("capture"), value)

    def page_image(self, cap: dict[str, Any]) -> bytes | None:
        """The capture's page image (PNG): the cached copy, else made from the archived original and
        cached (scan/pageview.py). Hash and size are sent with every mode, so every mode makes it.
        An original missing or damaged leaves this page without its image and the export goes on:
        the page is listed in the result (page_image_problems), never in the bundle (no kit path
        leaves the kit)."""
        from ..errors import NotFound
        from ..scan.pageview import PageImageUnavailable, page_image_png
        try:
            return page_image_png(self.kit.db.conn, self.kit.path, cap["capture_id"])
        except PageImageUnavailable as exc:
            self.page_image_problems.append({"capture_id": cap["capture_id"], "problem": str(exc)})
        except NotFound:  # no page image recorded for the capture
            pass
        return None

    def binary(self, bundle: PatientBundle, value: str, content_type: str, data: str) -> str:
        """A Binary has no identifier to be conditional on: it is PUT under an id derived from the
        page (update as create), so a re-send replaces it instead of adding a copy."""
        rid = str(uuid.uuid5(NS, f"Binary|{self.b.system('capture')}|{value}"))
        url = f"urn:uuid:{rid}"
        if ("Binary", url) not in bundle.urls:
            bundle.urls[("Binary", url)] = url
            bundle.entries.append({"fullUrl": url, "resource": {"resourceType": "Binary", "id": rid,
                                                                "contentType": content_type, "data": data},
                                   "request": {"method": "PUT", "url": f"Binary/{rid}"}})
        return url

    def provenance(self, bundle: PatientBundle, target: str, target_id: str, form: Form, fields: list[str],
                   occurred: str | None, initials: str | None, doc_urls: list[str]) -> None:
        self.fields_of[target] = list(fields)
        fvs = [form.fields[n] for n in fields if n in form.fields]
        agents = []
        if initials:
            agents.append(_agent("author", f"initials on the sheet: {initials}"))
        transcribers = sorted({p for fv in fvs for p in fv.transcribers})
        agents.append(_agent("enterer", ", ".join(transcribers) if transcribers
                             else f"fallbackkit scan (kit {self.kit.kit_id})"))
        for reviewer in sorted({p for fv in fvs for p in fv.reviewers}):
            agents.append(_agent("verifier", reviewer))
        times = [instant(self.store.captures[r.capture_id].get("captured_at")) for fv in fvs for r in fv.readings]
        times += [instant(fv.latest_at) for fv in fvs]
        times = [t for t in times if t]
        recorded = max(times, key=lambda t: _dt.datetime.fromisoformat(t)) if times else now_iso()
        resource: dict[str, Any] = {"resourceType": "Provenance", "target": [{"reference": target}],
                                    "recorded": recorded, "agent": agents,
                                    "entity": [{"role": "source", "what": {"reference": u}} for u in doc_urls]}
        if occurred:
            resource["occurredDateTime"] = occurred
        self.b.add(bundle, resource, self.b.system("provenance"), target_id, search="_tag")

    # -- items --
    def template(self, form: Form) -> Template | None:
        return self.templates.get(f"{form.template}@{form.row['version']}") or self.templates.get(form.template)

    def registration_roles(self, form: Form) -> dict[str, Any] | None:
        """The fields a registration form gives the Patient and Encounter (its template says)."""
        t = self.template(form)
        rule = next((r for r in (t.reentry if t else ()) if r.fhir == "registration"), None)
        return rule.roles if rule else None

    def items(self, form: Form) -> list[Item]:
        """The worklist's items of the form: the ids a clerk marks entered are the ids exported."""
        return [Item(w.item_id, form, list(w.fields), w.kind, w.rule, w.template, list(w.remarks))
                for w in self.work.get(form.form_id, []) if w.rule.fhir != "none"]

    def export_item(self, item: Item) -> int:
        """Adds the item's resources to its patient's bundle; returns how many clinical resources."""
        form = item.form
        values = _settled(form, [n for n in item.fields if n in form.fields])
        if not any(v not in (None, False, [], "") for n, v in values.items() if n != item.rule.date):
            return 0  # nothing written in this column/slot
        key = form.patient_key
        bundle = self.bundles.get(key) or self._bundle(key)
        # staged, so that an Unsettled raised half-way (or an item with nothing to send) adds nothing;
        # its urls over the bundle's (a copy per item was quadratic in a patient's entries)
        staged = PatientBundle(key, [], ChainMap({}, bundle.urls), bundle.patient_url)
        patient_url = self.patient(staged, form)
        enc_url = self.encounter(staged, form, patient_url)
        builder = {"observation": self._observations, "medication-administration": self._medication,
                   "service-request": self._lab, "registration": self._registration}[item.rule.fhir]
        produced = builder(staged, item, values, patient_url, enc_url)
        for entry in staged.entries if item.remarks else ():  # the worklist's remarks, as notes
            if entry["resource"]["resourceType"] in NOTED:
                entry["resource"].setdefault("note", []).extend({"text": r} for r in item.remarks)
        # per resource the fields it comes from (its Provenance's; the whole item for a Specimen)
        owned = [{"request": e["request"], "resource": e["resource"],
                  "fields": self.fields_of.get(e["fullUrl"], list(item.fields))} for e in staged.entries
                 if e["resource"]["resourceType"] not in SHARED_TYPES]
        record = {"item_id": item.key, "patient_mrn": key, "status": "sent", "resources": owned,
                  "content_sha256": content_hash(owned)}
        before = self.sent.get(item.key)
        if (self.since_last and before and before["status"] == "sent"
                and before["content_sha256"] == record["content_sha256"]):
            self._unchanged.add(item.key)  # sent before as it is now: nothing to send
            self.counts["unchanged"] += 1
            return 0
        if owned:
            self.records[item.key] = record
        if produced or item.rule.fhir == "registration":
            bundle.entries.extend(staged.entries)
            bundle.urls.update(staged.urls.maps[0])
            bundle.patient_url = staged.patient_url
            self.bundles[key] = bundle
        return produced

    def option_label(self, form: Form, field_name: str, value: str) -> str:
        """The English label printed next to a box (e.g. 'PT/INR, aPTT' for coag), else the value."""
        t = self.template(form)
        spec = t.spec(field_name) if t else None
        for o in spec.options if spec else ():
            if o.value == value:
                return o.label.get("en") or value
        return value

    def _ref(self, patient_url: str, enc_url: str) -> dict[str, Any]:
        return {"subject": {"reference": patient_url}, "encounter": {"reference": enc_url}}

    def _observations(self, bundle, item: Item, v: dict[str, Any], patient_url, enc_url) -> int:
        """One Observation per field the template codes (`observation:`): the cells of a grid
        column at the day + the column's time, or a named set of fields at the day."""
        rule, t = item.rule, item.template
        if v.get(rule.date) is None:
            raise Unsettled(f"the {rule.date_words} ({rule.date}) is blank")
        docs = self.documents(bundle, item.form, patient_url, enc_url, item.fields)
        if rule.each == "column":
            col = item.key.rsplit(":", 1)[1]
            time_field = f"{col}.{rule.time}"
            if v.get(time_field) is None:
                raise Unsettled(f"{time_field} is blank: the care time is unknown")
            when = care_time(v[rule.date], v[time_field], self.tz)
            initials = v.get(f"{col}.{rule.performer}") if rule.performer else None
            cells = [(f"{col}.{r.name}", r) for r in t.grid.rows if r.observation]
            timing = [time_field, rule.date]
        else:
            when = parse_date(v[rule.date]).isoformat()
            initials = None
            cells = [(n, t.spec(n)) for n in rule.fields if t.spec(n) and t.spec(n).observation]
            timing = [rule.date]
        produced = 0
        panels: dict[str, list[tuple[str, Any]]] = {}
        for name, spec in cells:
            if v.get(name) is None:
                continue
            obs = spec.observation
            if obs.panel:
                panels.setdefault(obs.panel.code, []).append((name, spec))
                continue
            if obs.codes:
                level = v[name]
                if level not in obs.codes:
                    raise Unsettled(f"{name} value {level!r} is not one of {', '.join(obs.codes)}")
                standard = t.fhir.codings(spec.name, level)
                value = {"valueCodeableConcept": {
                    "coding": [{"system": local_codes(spec.name), "code": level, "display": obs.codes[level]},
                               *standard],
                    "text": obs.codes[level]}}
            else:
                value = {"valueQuantity": self.quantity(obs, v[name])}
            produced += self._observation(bundle, item, f"{item.key}:{spec.name}", obs.codings(), obs.display, value,
                                          when, initials, patient_url, enc_url, docs, [name, *timing],
                                          obs.category)
        for code, members in panels.items():
            # e.g. blood pressure: one 85354-9 panel with a component per written value
            panel = members[0][1].observation.panel
            components = [{"code": {"coding": spec.observation.codings(), "text": spec.observation.display},
                           "valueQuantity": self.quantity(spec.observation, v[name])} for name, spec in members]
            produced += self._observation(bundle, item, f"{item.key}:{code}", [panel.as_fhir()], panel.display,
                                          {"component": components}, when, initials, patient_url, enc_url, docs,
                                          [*(n for n, _ in members), *timing],
                                          members[0][1].observation.category)
        return produced

    @staticmethod
    def quantity(obs, written: Any) -> dict[str, Any]:
        return {"value": parse_number(written), "unit": obs.unit_text, "system": UCUM, "code": obs.unit}

    def _observation(self, bundle, item, ident, codings, display, value, when, initials, patient_url, enc_url,
                     docs, fields, category: str = "vital-signs") -> int:
        coding = {"coding": codings, "text": display} if codings else {"text": display}
        resource = {"resourceType": "Observation", "status": "final",
                    "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
                    "code": coding, **self._ref(patient_url, enc_url), "effectiveDateTime": when, **value}
        if initials:
            resource["performer"] = [{"display": f"initials: {initials}"}]
        url = self.b.add(bundle, resource, self.b.system("item"), ident)
        self.provenance(bundle, url, ident, item.form, fields, when, initials, docs)
        return 1

    def _medication(self, bundle, item: Item, v: dict[str, Any], patient_url, enc_url) -> int:
        form = item.form
        slot = item.key.rsplit(":", 1)[1]
        row = slot.split(".")[0]
        status_field, given_field = f"{slot}.status", f"{slot}.given"
        if status_field in form.fields:
            status = v.get(status_field)
        else:
            status = "given" if v.get(given_field) else None
        if status is None:
            if v.get(f"{slot}.time") or v.get(f"{slot}.initials"):
                raise Unsettled(f"{slot}: a time or initials are written but no status is marked")
            return 0
        if status not in ("given", "held", "refused"):
            raise Unsettled(f"{slot}: status {status!r} is not given/held/refused")
        day = item.rule.date
        if v.get(day) is None:
            raise Unsettled(f"the {item.rule.date_words} ({day}) is blank")
        geo = form.geometry.get(status_field) or form.geometry.get(given_field) or {}
        med_text = self._medication_text(form, geo.get("medication"), v.get(f"{row}.order"))
        line = self._census_line(form, geo.get("medication"))
        if not med_text:
            raise Unsettled(f"{slot}: the medication is unknown (the order line is blank)")
        actual = v.get(f"{slot}.time")
        if status == "given" and actual is None:
            raise Unsettled(f"{slot}: marked given but the time is blank")
        when = care_time(v[day], actual if actual is not None else geo.get("scheduled"), self.tz)
        initials = v.get(f"{slot}.initials")
        t = item.template
        medication: dict[str, Any] = {"text": med_text}
        code_system = t.fhir.drug_code_systems.get(str(line.get("drug_code_system") or "").upper())
        if line.get("drug_code") and code_system:
            medication["coding"] = [{"system": code_system, "code": str(line["drug_code"]),
                                     "display": str(line.get("medication") or med_text)}]
        resource: dict[str, Any] = {
            "resourceType": "MedicationAdministration",
            "status": "completed" if status == "given" else "not-done",
            "medicationCodeableConcept": medication,
            "subject": {"reference": patient_url}, "context": {"reference": enc_url},
            "effectiveDateTime": when}
        if status != "given":
            resource["statusReason"] = [{"coding": [{"system": local_codes("not-given"), "code": status,
                                                     "display": status},
                                                    *t.fhir.codings("status", status)], "text": status}]
        dosage: dict[str, Any] = {}
        if line.get("dose"):
            dosage["text"] = " ".join(str(line[k]) for k in ("dose", "route") if line.get(k))
            dose = paper_values.dose_quantity(line["dose"])
            if dose:
                dosage["dose"] = {**dose, "system": UCUM}
        if line.get("route"):
            dosage["route"] = {"coding": t.fhir.route(line["route"]), "text": str(line["route"])}
            if not dosage["route"]["coding"]:
                del dosage["route"]["coding"]
        if dosage:
            resource["dosage"] = dosage
        if line.get("order_id"):
            # the hospital's order: a logical reference (the kit sends no MedicationRequest)
            resource["request"] = {"type": "MedicationRequest", "identifier": {
                "system": self.b.system("medication-order"), "value": str(line["order_id"])},
                "display": f"order {line['order_id']}"}
        if geo.get("scheduled"):
            resource["note"] = [{"text": f"scheduled {geo['scheduled']}"}]
        if initials:
            resource["performer"] = [{"actor": self._performer(bundle, form, initials)}]
        docs = self.documents(bundle, form, patient_url, enc_url, item.fields)
        url = self.b.add(bundle, resource, self.b.system("item"), item.key)
        self.provenance(bundle, url, item.key, form, item.fields, when, initials, docs)
        return 1

    def _performer(self, bundle: PatientBundle, form: Form, initials: str) -> dict[str, Any]:
        """A Practitioner when the sheet's initials legend puts the initials to exactly one named
        person (reconcile/legend.py); else the initials as written. One Practitioner per legend row
        of a sheet: matching it to the hospital's staff directory is left to the receiving side."""
        from ..reconcile.legend import legend_of, performer
        found = performer(legend_of({n: form.value(n) for n in form.fields}), initials)
        if not found or not found["name"]:
            return {"display": f"initials: {initials}"}
        practitioner = {"resourceType": "Practitioner", "active": True,
                        "name": [{"text": found["name"]}],
                        "identifier": [{"system": self.b.system("initials"), "value": found["initials"]}]}
        url = self.b.add(bundle, practitioner, self.b.system("legend"), f"{form.form_id}:l{found['legend_row']}")
        return {"reference": url, "display": f"{found['name']} ({found['initials']})"}

    @staticmethod
    def _census_line(form: Form, line: Any) -> dict[str, Any]:
        """The census medication printed on this MAR row (drug code, dose, route, order id), if any."""
        if line is None:
            return {}
        meds = json.loads(form.row["context"] or "{}").get("medications", [])
        return next((m for m in meds if m["line"] == line), {})

    @staticmethod
    def _medication_text(form: Form, line: Any, order: Any) -> str | None:
        if line is not None:
            meds = json.loads(form.row["context"] or "{}").get("medications", [])
            for m in meds:
                if m["line"] == line:
                    return " ".join(str(m[k]) for k in ("medication", "dose", "route", "frequency") if m.get(k))
        return str(order).strip() if order else None

    def _lab(self, bundle, item: Item, v: dict[str, Any], patient_url, enc_url) -> int:
        """A Specimen and one ServiceRequest per test; the template's roles name the fields."""
        form, roles = item.form, item.rule.roles
        role = lambda r: v.get(roles[r]) if roles.get(r) else None  # noqa: E731
        ticked = list(role("tests") or [])
        tests = list(ticked)
        if role("other_tests"):
            tests.append(str(role("other_tests")))
        if not tests:
            raise Unsettled("no test is ticked")
        if role("collected") is None:
            raise Unsettled(f"the {item.rule.date_words} ({roles['collected']}) is blank")
        when = parse_datetime(role("collected"), self.tz)
        accession = form.row["accession"]
        requisition = ({"system": self.b.system("downtime-accession") if accession.startswith("DTA")
                        else self.b.accession_system, "value": accession}
                       if accession else {"system": self.b.system("form"), "value": form.form_id})
        docs = self.documents(bundle, form, patient_url, enc_url, item.fields)
        specimen_id = f"{form.form_id}:specimen"
        specimen = {"resourceType": "Specimen", "subject": {"reference": patient_url},
                    "collection": {"collectedDateTime": when}}
        t = item.template
        if role("specimen"):
            label = self.option_label(form, roles["specimen"], role("specimen"))
            specimen["type"] = {"coding": [{"system": local_codes("specimen"), "code": role("specimen"),
                                            "display": label},
                                           *t.fhir.codings(roles["specimen"], role("specimen"))],
                                "text": label}
        if role("collector"):
            specimen["collection"]["collector"] = {"display": f"initials: {role('collector')}"}
        specimen_url = self.b.add(bundle, specimen, self.b.system("item"), specimen_id)
        produced = 0
        for test in tests:
            # identifiers come from stable keys only: a ticked test's option value, or the field of
            # the free-text "other tests" (its text, e.g. "ferritin, B12", may change and holds commas)
            ident = f"{form.form_id}:{test if test in ticked else roles['other_tests']}"
            label = self.option_label(form, roles["tests"], test)
            sr: dict[str, Any] = {
                "resourceType": "ServiceRequest", "status": "active", "intent": "order",
                "requisition": requisition,
                "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007",
                                          "display": "Laboratory procedure"}]}],
                "code": {"coding": [{"system": local_codes("lab-test"), "code": test, "display": label},
                                    *t.fhir.codings(roles["tests"], test)],
                         "text": label} if test in ticked else {"text": test},
                **self._ref(patient_url, enc_url), "occurrenceDateTime": when,
                "specimen": [{"reference": specimen_url}]}
            if role("priority") in PRIORITY:
                sr["priority"] = PRIORITY[role("priority")]
            if role("requester"):
                sr["requester"] = {"display": str(role("requester"))}
            notes = [n.replace("_", " ") for n in roles.get("flag_notes", []) if v.get(n)]
            notes += [f"{words}: {v[n]}" for n, words in roles.get("text_notes", {}).items() if v.get(n)]
            if notes:
                sr["note"] = [{"text": n} for n in notes]
            url = self.b.add(bundle, sr, self.b.system("item"), ident)
            self.provenance(bundle, url, ident, form, item.fields, when, role("collector"), docs)
            produced += 1
        return produced

    def _registration(self, bundle, item: Item, v: dict[str, Any], patient_url, enc_url) -> int:
        """Patient and Encounter carry the identity and the admission; the registration itself makes
        the contact person (RelatedPerson), the allergies (the census's and the form's) and the alerts."""
        form, roles, t = item.form, item.rule.roles, item.template
        role = lambda r: v.get(roles[r]) if roles.get(r) else None  # noqa: E731
        docs = self.documents(bundle, form, patient_url, enc_url, item.fields)
        written = next((v[n] for n in item.rule.care_time if v.get(n)), None)  # arrival, else recording time
        when = parse_datetime(written, self.tz) if written else None
        initials = role("recorder")
        produced = 0

        def add(resource: dict[str, Any], ident: str, fields: list[str]) -> None:
            nonlocal produced
            url = self.b.add(bundle, resource, self.b.system("item"), ident)
            self.provenance(bundle, url, ident, form, fields, when, initials, docs)
            produced += 1

        if role("contact"):
            add({"resourceType": "RelatedPerson", "active": True, "patient": {"reference": patient_url},
                 "name": [{"text": str(role("contact"))}],
                 "relationship": [{"text": "next of kin / contact person (downtime registration)"}]},
                f"{form.form_id}:contact", [roles["contact"]])
        census = self.store.census.get(form.real_mrn or "") or {}
        for substance in [a.strip() for a in (census.get("allergies") or "").split(";") if a.strip()]:
            key = hashlib.sha1(substance.lower().encode()).hexdigest()[:12]
            add({"resourceType": "AllergyIntolerance", "patient": {"reference": patient_url},
                 "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": "active"}]},
                 "code": {"text": substance}, "note": [{"text": "from the census snapshot"}]},
                f"{form.form_id}:census-allergy:{key}", list(item.fields))  # the page it came with
        known, written = role("allergies_known"), role("allergies")
        if known == "yes":
            # a substance written by hand is not coded: a Flag a person sees, not a coded allergy
            add({"resourceType": "Flag", "status": "active", "subject": {"reference": patient_url},
                 "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category",
                                           "code": "clinical", "display": "Clinical"}]}],
                 "code": {"text": f"Allergies: {written}" if written else
                          "Allergies: yes (substance not written on the registration form)"},
                 "encounter": {"reference": enc_url}},
                f"{form.form_id}:allergies", [roles["allergies_known"], *([roles["allergies"]] if written else [])])
        elif known == "no" and t.fhir.codings(roles["allergies_known"], "no"):
            add({"resourceType": "AllergyIntolerance", "patient": {"reference": patient_url},
                 "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": "active"}]},
                 "verificationStatus": {"coding": [{"system": ALLERGY_VERIFICATION, "code": "unconfirmed"}]},
                 "code": {"coding": t.fhir.codings(roles["allergies_known"], "no"), "text": "no known allergy"}},
                f"{form.form_id}:allergies", [roles["allergies_known"]])
        for alert in role("alerts") or []:
            label = self.option_label(form, roles["alerts"], alert)
            add({"resourceType": "Flag", "status": "active", "subject": {"reference": patient_url},
                 "code": {"coding": [{"system": local_codes("alert"), "code": alert, "display": label},
                                     *t.fhir.codings(roles["alerts"], alert)], "text": label},
                 "encounter": {"reference": enc_url}},
                f"{form.form_id}:alert:{alert}", [roles["alerts"]])
        return produced

    # -- driver --
    def run(self) -> dict[str, Any]:
        """The whole export in memory: {bundles: {MRN: bundle}, pending: [...]} (small kits, tests);
        also fills pending, skipped, withdrawn, exported and records. `export_fhir` streams instead."""
        out = _InMemory(self)
        self.stream(out)
        self.pending, self.skipped, self.withdrawn = out.sorted("pending"), out.sorted("skipped"), out.sorted("withdrawn")
        self.exported, self.records = out.exported, out.records
        return {"bundles": dict(sorted(out.bundles.items())), "pending": self.pending}

    def stream(self, out: Any) -> None:
        """Every form of the export's scope a batch at a time, grouped by patient: each patient's
        bundle is complete (its items in print order, then its withdrawals) before the next one's
        starts, and is handed to OUT as it is made. Patients go in the order of their MRN (the order
        of the files), forms without a patient first; pending and skipped items are handed over with
        the form's place in print order, withdrawals with their item id, so that OUT writes them in
        the order a whole-kit export listed them."""
        from ..reconcile.worklist import ItemsByForm
        self.out = out
        conn = self.kit.db.conn
        self.loader = FormLoader(self.kit)
        links = self.loader.links
        self.position: dict[str, int] = {}
        keyless: list[str] = []
        sql = "SELECT form_id, patient_mrn, downtime_mrn, template, version FROM forms"
        params = [self.ward] if self.ward else []
        if self.ward:
            sql += " WHERE ward = ?"
        for pos, (fid, mrn, downtime, template, version) in enumerate(
                conn.execute(sql + " ORDER BY printed_at, form_id", params)):
            self.position[fid] = pos
            key = mrn or links.get(downtime or "") or downtime  # Form.patient_key
            if not key:
                keyless.append(fid)
                continue
            group = self.patients.get(key) or self.patients.setdefault(key, PatientForms(key))
            group.forms.append((fid, template, version))
            if downtime:
                group.downtime.add(downtime)
        order: list[tuple[PatientForms | None, str]] = [(None, fid) for fid in keyless]
        for key in sorted(self.patients):
            order += [(self.patients[key], fid) for fid, _, _ in self.patients[key].forms]
        items_of = ItemsByForm(self.kit, self.templates)
        try:  # nothing exported yet (the first export of a kit): no lookup per form
            any_sent = conn.execute("SELECT 1 FROM export_items LIMIT 1").fetchone() is not None
        except sqlite3.OperationalError:  # a read-only kit made before m0045
            any_sent = False
        for start in range(0, len(order), FORMS_PER_BATCH):
            part = order[start:start + FORMS_PER_BATCH]
            store = self.loader.store([fid for _, fid in part])
            store.census = self.census
            self.store = store
            by_id = {f.form_id: f for f in store.forms}
            captured = [f.form_id for f in store.forms if f.captures]
            self.work = items_of(captured)
            self.sent = last_sent_of_forms(conn, captured) if any_sent else {}
            self._sent_by_form = {}
            for item_id in sorted(self.sent):
                self._sent_by_form.setdefault(item_id.split(":", 1)[0], []).append(item_id)
            self.fields_of = {}
            for n, (group, fid) in enumerate(part, start=start):
                form = by_id.get(fid)
                if form is not None and self._export_form(form) and group is not None:
                    group.withdrawals += self._withdrawals(form)
                if group is not None and (n + 1 == len(order) or order[n + 1][0] is not group):
                    self._finish(group)
            self.store = Store(self.kit.kit_id, [], [], {}, {}, {}, self.census)

    def _export_form(self, form: Form) -> bool:
        """The form's items into its patient's bundle (or pending); False when out of scope."""
        if not form.captures or not touched_since(form, self.since):
            return False
        pos = self.position[form.form_id]
        if not form.patient_key:
            self.counts["pending"] += 1
            self.out.add("pending", pos, {"form_id": form.form_id, "template": form.template, "item": None,
                                          "reason": "the form carries no patient identifier"})
            return False
        self.records, self._pending, self._skipped, self._unchanged = {}, {}, set(), set()
        for item in self.items(form):
            mark = self.marks.get(item.key)
            if self.skip_entered and mark in ("entered", "not-needed"):
                # typed in by a clerk already (or not needed): sending it too would duplicate it
                self._skipped.add(item.key)
                self.counts["skipped"] += 1
                self.out.add("skipped", pos, {"item": item.key, "status": mark, "patient_mrn": form.patient_key})
                continue
            try:
                n = self.export_item(item)
            except Unsettled as exc:
                self._pending[item.key] = str(exc)
                self.counts["pending"] += 1
                self.out.add("pending", pos, {"item": item.key, "form_id": form.form_id, "template": form.template,
                                              "kind": item.kind, "ward": form.row["ward"],
                                              "patient_mrn": form.patient_key,
                                              "downtime_mrn": form.row["downtime_mrn"], "reason": str(exc)})
                continue
            if n:
                self.counts["exported"] += 1
                self.out.exported_item({"item": item.key, "resources": n, "patient_mrn": form.patient_key})
        return True

    def _withdrawals(self, form: Form) -> list[tuple]:
        """What an earlier export sent for the form's items that this export does not send again
        (the value was withdrawn on paper, a decision was undone, the item is unsettled again): sent
        as entered-in-error once the patient's items are all in (`_finish`), so that the receiving
        record never keeps a value the kit no longer stands behind. Also hands over the form's
        records (what this export sends per item)."""
        plans = []
        for item_id in self._sent_by_form.get(form.form_id, []):
            if item_id in self._skipped or item_id in self._unchanged:
                continue
            before = self.sent[item_id]
            now = self.records.get(item_id)
            earlier = [r for r in before["resources"] if not r.get("withdrawn")]
            if item_id in self._pending:
                # unsettled again (a decision undone, a new capture that disagrees): withdraw what
                # comes from a field that is not settled now; the rest stays as it was sent
                unsettled = {n for n, fv in form.fields.items() if not fv.settled}
                emptied = {n for n, fv in form.fields.items() if fv.settled and fv.value in (None, "", False, [])}
                gone = [r for r in earlier if not r.get("fields") or unsettled & set(r["fields"])
                        or (r["resource"]["resourceType"] == "Observation" and r["fields"][0] in emptied)]
                reason = f"not settled any more: {self._pending[item_id]}"
            else:
                keep = {r["request"]["url"] for r in now["resources"]} if now else set()
                gone = [r for r in earlier if r["request"]["url"] not in keep]
                reason = "no longer on the paper after people's decisions"
            if gone:
                plans.append((item_id, form, now, earlier, gone, reason))
        for record in self.records.values():
            self.out.record(record)
        self.records = {}
        return plans

    def _finish(self, group: PatientForms) -> None:
        """The patient's withdrawals (in item order), its Patient record, and its bundle handed over."""
        key = group.key
        for item_id, form, now, earlier, gone, reason in sorted(group.withdrawals, key=lambda w: w[0]):
            bundle = self.bundles.get(key) or self._bundle(key)
            patient_url = self.patient(bundle, form)
            enc_url = self.encounter(bundle, form, patient_url)
            out = []
            for r in gone:
                resource = entered_in_error(r["resource"], patient_url, enc_url, reason)
                bundle.entries.append({"fullUrl": "urn:uuid:" + str(uuid.uuid5(NS, r["request"]["url"])),
                                       "resource": resource, "request": r["request"]})
                out.append({"request": r["request"], "resource": resource, "withdrawn": True})
                self.counts["withdrawn"] += 1
                self.out.add("withdrawn", item_id, {"item": item_id, "resource": r["request"]["url"],
                                                    "reason": reason, "patient_mrn": key})
            self.bundles[key] = bundle
            if now:
                kept, digest = now["resources"], now["content_sha256"]
            else:  # what an earlier export sent and nobody withdrew stays on the server as it was
                kept = [r for r in earlier if r not in gone]
                digest = content_hash([])
            self.out.record({"item_id": item_id, "patient_mrn": key, "status": "sent" if kept else "withdrawn",
                             "resources": kept + out, "content_sha256": digest})
        bundle = self.bundles.pop(key, None)
        if bundle is not None:
            patients = bundle.entries.patients
            # which patients were sent, so that a later link can retire a downtime-only Patient
            self.out.record({"item_id": f"patient:{key}", "patient_mrn": key, "status": "sent",
                             "resources": patients, "content_sha256": content_hash(patients)})
            self.out.bundle_done(key, bundle.entries)
        self.link_patches.pop(key, None)
        del self.patients[key]  # done: nothing of this patient is held any more

    def _bundle(self, key: str) -> PatientBundle:
        """A patient's bundle, its committed entries handed to the output as they come."""
        return PatientBundle(key, self.out.entries(key, lambda: self.bundle_head(key)))

    def bundle_head(self, key: str) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction",
                "identifier": {"system": self.b.system("bundle"), "value": key}, "timestamp": now_iso()}

    def bundle_json(self, bundle: PatientBundle) -> dict[str, Any]:
        return {**self.bundle_head(bundle.key), "entry": list(bundle.entries.held if isinstance(
            bundle.entries, Entries) else bundle.entries)}


class _InMemory:
    """Where `FhirExport.run` gathers the export (small kits and tests)."""

    def __init__(self, job: FhirExport):
        self.job = job
        self.lists: dict[str, list[tuple]] = {"pending": [], "skipped": [], "withdrawn": []}
        self.exported: list[dict[str, Any]] = []
        self.records: dict[str, dict[str, Any]] = {}
        self.bundles: dict[str, dict[str, Any]] = {}

    def add(self, what: str, order: Any, entry: dict[str, Any]) -> None:
        self.lists[what].append((order, len(self.lists[what]), entry))

    def sorted(self, what: str) -> list[dict[str, Any]]:
        return [entry for _, _, entry in sorted(self.lists[what], key=lambda x: x[:2])]

    def exported_item(self, entry: dict[str, Any]) -> None:
        self.exported.append(entry)

    def record(self, record: dict[str, Any]) -> None:
        self.records[record["item_id"]] = record

    def entries(self, key: str, head: Callable[[], dict[str, Any]]) -> Entries:
        return Entries(head, None)

    def bundle_done(self, key: str, entries: Entries) -> None:
        self.bundles[key] = {**entries.head(), "entry": entries.held}


class _Files:
    """Where `export_fhir` writes the export as it comes: each bundle into its file (cut into
    parts, or made a batch, once the patient's bundle is complete), link files, and what goes into
    pending.json and the export record spooled in a private SQLite file beside the export, to be
    written in the order of a whole-kit export at the end."""

    def __init__(self, job: FhirExport, out_dir: Path, staged: StagedFiles, max_entries: int | None,
                 bundle_type: str):
        self.job, self.out_dir, self.staged = job, out_dir, staged
        self.max_entries, self.bundle_type = max_entries, bundle_type
        self.hold = bool(max_entries) or bundle_type == "batch"
        out_dir.mkdir(parents=True, exist_ok=True)
        sweep_leftovers(out_dir)  # a spool and files of an export killed before it ended
        self.spool_dir = Path(tempfile.mkdtemp(prefix=f".fallbackkit-spool-{os.getpid()}-", dir=out_dir))  # mode 0700
        self.spool = sqlite3.connect(self.spool_dir / "spool.sqlite")
        self.spool.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE lists (what TEXT, k1, k2 INTEGER, doc TEXT);"
            "CREATE TABLE records (item_id TEXT PRIMARY KEY, patient_mrn TEXT, status TEXT, sha TEXT, resources TEXT);")
        self.seq = 0
        self.bundle_files: list[Path] = []
        self.link_files: list[Path] = []
        self.by_type: Counter = Counter()
        self.resources = self.patients = 0

    def add(self, what: str, order: Any, entry: dict[str, Any]) -> None:
        self.seq += 1
        self.spool.execute("INSERT INTO lists VALUES (?, ?, ?, ?)",
                           [what, order, self.seq, json.dumps(entry, ensure_ascii=False)])

    def listed(self, what: str) -> Iterator[dict[str, Any]]:
        for (doc,) in self.spool.execute("SELECT doc FROM lists WHERE what = ? ORDER BY k1, k2", [what]):
            yield json.loads(doc)

    def exported_item(self, entry: dict[str, Any]) -> None:
        pass  # counted by the job

    def record(self, record: dict[str, Any]) -> None:
        self.spool.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?)",
                           [record["item_id"], record.get("patient_mrn"), record["status"], record["content_sha256"],
                            json.dumps(record["resources"], ensure_ascii=False)])

    def records(self) -> Iterator[dict[str, Any]]:
        for item_id, mrn, status, sha, resources in self.spool.execute("SELECT * FROM records ORDER BY item_id"):
            yield {"item_id": item_id, "patient_mrn": mrn, "status": status, "content_sha256": sha,
                   "resources_json": resources}

    def entries(self, key: str, head: Callable[[], dict[str, Any]]) -> Entries:
        path = self.out_dir / file_name("bundle-", key, ".json")
        return Entries(head, None if self.hold else lambda: self.staged.open(path, f"the bundle of {key}"))

    def bundle_done(self, key: str, entries: Entries) -> None:
        self.patients += 1
        self.resources += entries.count
        self.by_type.update(entries.by_type)
        fh = entries.finish()
        if fh is not None:
            self.bundle_files.append(self.staged.close(fh))
        else:
            whole = {**entries.head(), "entry": entries.held}
            parts = split_transaction(whole, self.max_entries) if self.max_entries else [whole]
            if self.bundle_type == "batch":
                parts = [as_batch(p) for p in parts]
            for k, bundle in enumerate(parts, start=1):
                suffix = ".json" if len(parts) == 1 else f".part{k}of{len(parts)}.json"
                self.bundle_files.append(self.staged.write(self.out_dir / file_name("bundle-", key, suffix),
                                                           jsontext.dumps(bundle, indent=1),
                                                           f"the bundle of {key}"))
        if key in self.job.link_patches:  # only patients this export sends
            self.link_files.append(self.staged.write(
                self.out_dir / file_name("link-", key, ".json"),
                jsontext.dumps(self.job.link_bundle(key), indent=1), f"the link batch of {key}"))

    def close(self) -> None:
        self.spool.close()
        shutil.rmtree(self.spool_dir, ignore_errors=True)


def entered_in_error(sent: dict[str, Any], patient_url: str, enc_url: str, reason: str) -> dict[str, Any]:
    """The resource as it was sent, marked entered-in-error, pointing at today's patient and
    encounter entries; other references (a specimen, an order) are left out, so the entry needs
    nothing else in its bundle."""
    r = json.loads(json.dumps(sent))
    rtype = r["resourceType"]
    for name in list(r):
        if name in ("subject", "patient"):
            r[name] = {"reference": patient_url}
        elif name in ("encounter", "context") and rtype != "DocumentReference":
            r[name] = {"reference": enc_url}
        elif '"urn:uuid:' in json.dumps(r[name]):
            del r[name]
    if rtype == "AllergyIntolerance":
        r.pop("clinicalStatus", None)
        r["verificationStatus"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
            "code": "entered-in-error"}]}
    elif rtype == "RelatedPerson":
        r["active"] = False
    else:
        r["status"] = "entered-in-error"
    if rtype in ENTERED_IN_ERROR_NOTE:
        r["note"] = [*r.get("note", []), {"text": f"entered in error (fallbackkit): {reason}"}]
    return r


def export_fhir(kit: Kit, out_dir: Path | str, ward: str | None = None, since: str | None = None,
                mrn_system: str | None = None, skip_entered: bool = False,
                tz: str | None = None, max_entries: int | None = None,
                actor: str | None = None, page_images: str = "binary",
                bundle_type: str = "transaction") -> dict[str, Any]:
    """Write OUT/bundle-<MRN>.json per patient and OUT/pending.json; every file mode 0600; then the
    export record (store/exports.py): files, resources by type, hash, and per item what was sent.

    since='LAST' sends only the items whose content differs from what the export record says was
    last sent, and the withdrawals.

    With max_entries a patient's bundle bigger than that is written as self-contained parts
    (bundle-<MRN>.part<k>of<n>.json, see export/bundles.py), to be sent in order.

    File names come from fallbackkit/files.py: two patients never share a file (`A/1` and `A_1`).

    Bundles of an earlier export in OUT that this export does not rewrite are removed: after a
    downtime MRN is linked, its old bundle would otherwise be sent too.
    """
    if bundle_type not in ("transaction", "batch"):
        raise BadInput(f"--bundle-type {bundle_type!r}: transaction or batch")
    out_dir = outside_kit(kit.path, out_dir, "an export")
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"{out_dir} is a file", hint="--format fhir writes a directory of bundles")
    job = FhirExport(kit, ward, since, mrn_system, skip_entered, tz, page_images)
    # every file goes in place only once all are written: a refused name (two patients in one
    # file) or a failure half-way leaves the older export as it was and no file of this one
    staged = StagedFiles()
    pending_path = staged.outputs.claim(out_dir / "pending.json")
    out = _Files(job, out_dir, staged, max_entries, bundle_type)
    try:
        with snapshot(kit):  # one state of the store, read a batch at a time
            job.stream(out)
            with_pending = {"kit_id": kit.kit_id, "exported_at": now_iso(), "ward": ward, "since": since,
                            "note": "not exported: still under review, in conflict, or incomplete on paper",
                            "items": out.listed("pending"), "skipped_entered": out.listed("skipped"),
                            "withdrawn": out.listed("withdrawn"), "unchanged_since_last": job.counts["unchanged"]}
            fh = staged.open(pending_path, claimed=True)
            _write_json(fh, with_pending)
            staged.close(fh)
        staged.commit()
        files = out.bundle_files + out.link_files
        written = {f.name for f in files}
        stale = [p for p in [*out_dir.glob("bundle-*.json"), *out_dir.glob("link-*.json")] if p.name not in written]
        for p in stale:
            p.unlink()
        export_id = record_export_if_writable(kit, actor or default_actor(), "fhir", [*files, pending_path],
                                              out.by_type, out.records(), ward, since)
    except BaseException:
        staged.discard()
        raise
    finally:
        out.close()
    return {"export_id": export_id, "withdrawn": job.counts["withdrawn"], "unchanged_since_last": job.counts["unchanged"],
            "since_last": job.since_last, "identity_notes": job.identity_notes, "tz": job.tz,
            "removed_stale": [p.name for p in stale], "skipped_entered": job.counts["skipped"],
            "bundles": sum(f.name.startswith("bundle-") for f in files), "files": [str(f) for f in files],
            "link_files": [f.name for f in files if f.name.startswith("link-")], "pending_file": str(pending_path),
            "pending": job.counts["pending"], "items_exported": job.counts["exported"],
            "resources": out.resources, "patients": out.patients, "page_image_problems": job.page_image_problems}
