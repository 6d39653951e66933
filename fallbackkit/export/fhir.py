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
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import BadInput
from ..store.kit import Kit, now_iso
from ..store.settings import check_zone, get_setting, stored_setting, system_zone
from ..files import OutputFiles, file_name, outside_kit
from ..templates import values as paper_values
from ..templates.model import Template
from ..templates.semantics import ItemRule
from .bundles import split_transaction
from .collect import Form, Store, load, parse_since, touched_since, write_private

NS = uuid.UUID("8f0d7f3e-4c1e-5b8a-9a51-6b7f2a0c3d11")
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

PRIORITY = {"routine": "routine", "urgent": "urgent", "stat": "stat"}
GENDER = {"female": "female", "male": "male", "other": "other", "unknown": "unknown", "f": "female", "m": "male",
          "x": "other"}


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
    entries: list[dict[str, Any]] = field(default_factory=list)
    urls: dict[tuple[str, str], str] = field(default_factory=dict)
    patient_url: str | None = None


class BundleBuilder:
    def __init__(self, store: Store, mrn_system: str | None = None, encounter_system: str | None = None,
                 accession_system: str | None = None):
        self.store = store
        self.base = f"urn:fallbackkit:{store.kit_id}"
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
                 mrn_system: str | None = None, skip_entered: bool = False, tz: str | None = None):
        zone_ok(tz)
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
        self.skipped: list[dict[str, Any]] = []
        self.marks = {item: status for item, status in kit.db.conn.execute(
            "SELECT item_id, status FROM worklist_marks ORDER BY id")}
        self.store = load(kit, ward)
        self.since = parse_since(since, self.tz)
        self.b = BundleBuilder(self.store, mrn_system, encounter_system, stored_setting(kit, "accession_system"))
        self.bundles: dict[str, PatientBundle] = {}
        self.pending: list[dict[str, Any]] = []
        self.exported: list[dict[str, Any]] = []

    # -- patients and encounters --
    def patient(self, bundle: PatientBundle, form: Form) -> str:
        key = form.patient_key
        if bundle.patient_url:
            return bundle.patient_url
        real = form.real_mrn
        downtime = sorted({f.row["downtime_mrn"] for f in self.store.forms
                           if f.row["downtime_mrn"] and f.patient_key == key})
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
        if real:
            url = self.b.add(bundle, resource, self.b.mrn_system, real, create_only=True)
        else:
            url = self.b.add(bundle, resource, self.b.system("downtime-mrn"), key)
        bundle.patient_url = url
        return url

    def _demographics_from_paper(self, key: str, resource: dict[str, Any]) -> None:
        """A patient known only by a downtime MRN: name and birth date from a settled registration form."""
        for form in self.store.forms:
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
            return
        # no registration form: the name and birth date handwritten on blank stock, when settled
        for form in self.store.forms:
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
        return self.b.add(bundle, resource, system, number)

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
        file = self.store.files.get(cap["file_sha256"], {})
        image = cap.get("image_path")
        attachment: dict[str, Any] = {"title": f"sheet {cap['sheet_id']} page {cap['page']}/{cap['pages']}"}
        if image:
            path = self.kit.path / image
            suffix = Path(image).suffix.lower()
            attachment["contentType"] = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                                         ".tif": "image/tiff", ".tiff": "image/tiff"}.get(suffix, "image/png")
            attachment["url"] = image
            if path.is_file():
                data = path.read_bytes()
                attachment["size"] = len(data)
                attachment["hash"] = base64.b64encode(hashlib.sha1(data).digest()).decode()
        elif file.get("archive_path"):
            attachment["contentType"] = {"pdf": "application/pdf", "tiff": "image/tiff", "png": "image/png",
                                         "jpeg": "image/jpeg"}.get(file.get("kind") or "", "application/octet-stream")
            attachment["url"] = f"{file['archive_path']}#page={cap['page_index']}"
        else:
            attachment["contentType"] = "application/octet-stream"
            attachment["url"] = f"urn:fallbackkit:{self.store.kit_id}:file:{cap['file_sha256']}#page={cap['page_index']}"
        resource = {"resourceType": "DocumentReference", "status": "current",
                    "type": {"text": f"Scanned downtime form page ({form.template})"},
                    "subject": {"reference": patient_url},
                    "description": f"{form.template} form {form.form_id}, sheet {cap['sheet_id']}, "
                                   f"page {cap['page']} of {cap['pages']}; original file "
                                   f"{file.get('first_path') or cap['file_sha256']} page {cap['page_index']}",
                    "content": [{"attachment": attachment}],
                    "context": {"encounter": [{"reference": enc_url}]}}
        date = instant(cap.get("captured_at"))
        if date:
            resource["date"] = date
        value = f"{cap['file_sha256']}:{cap['page_index']}:{cap.get('source') or 'scan'}"
        return self.b.add(bundle, resource, self.b.system("capture"), value)

    def provenance(self, bundle: PatientBundle, target: str, target_id: str, form: Form, fields: list[str],
                   occurred: str | None, initials: str | None, doc_urls: list[str]) -> None:
        fvs = [form.fields[n] for n in fields if n in form.fields]
        agents = []
        if initials:
            agents.append(_agent("author", f"initials on the sheet: {initials}"))
        transcribers = sorted({p for fv in fvs for p in fv.transcribers})
        agents.append(_agent("enterer", ", ".join(transcribers) if transcribers
                             else f"fallbackkit scan (kit {self.store.kit_id})"))
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
        bundle = self.bundles.get(key) or PatientBundle(key)
        # staged, so that an Unsettled raised half-way (or an item with nothing to send) adds nothing
        staged = PatientBundle(key, [], dict(bundle.urls), bundle.patient_url)
        patient_url = self.patient(staged, form)
        enc_url = self.encounter(staged, form, patient_url)
        builder = {"observation": self._observations, "medication-administration": self._medication,
                   "service-request": self._lab, "registration": self._registration}[item.rule.fhir]
        produced = builder(staged, item, values, patient_url, enc_url)
        for entry in staged.entries if item.remarks else ():  # the worklist's remarks, as notes
            if entry["resource"]["resourceType"] in NOTED:
                entry["resource"].setdefault("note", []).extend({"text": r} for r in item.remarks)
        if produced or item.rule.fhir == "registration":
            bundle.entries.extend(staged.entries)
            bundle.urls, bundle.patient_url = staged.urls, staged.patient_url
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
        for name, spec in cells:
            if v.get(name) is None:
                continue
            obs = spec.observation
            if obs.codes:
                level = v[name]
                if level not in obs.codes:
                    raise Unsettled(f"{name} value {level!r} is not one of {', '.join(obs.codes)}")
                value = {"valueCodeableConcept": {"coding": [{"system": f"{self.b.base}:{spec.name}", "code": level,
                                                              "display": obs.codes[level]}],
                                                  "text": obs.codes[level]}}
            else:
                value = {"valueQuantity": {"value": parse_number(v[name]), "unit": obs.unit_text, "system": UCUM,
                                           "code": obs.unit}}
            produced += self._observation(bundle, item, f"{item.key}:{spec.name}", obs.loinc, obs.display, value,
                                          when, initials, patient_url, enc_url, docs, [name, *timing],
                                          obs.category)
        return produced

    def _observation(self, bundle, item, ident, code, display, value, when, initials, patient_url, enc_url,
                     docs, fields, category: str = "vital-signs") -> int:
        coding = {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display} if code \
            else {"text": display}
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
        if not med_text:
            raise Unsettled(f"{slot}: the medication is unknown (the order line is blank)")
        actual = v.get(f"{slot}.time")
        if status == "given" and actual is None:
            raise Unsettled(f"{slot}: marked given but the time is blank")
        when = care_time(v[day], actual if actual is not None else geo.get("scheduled"), self.tz)
        initials = v.get(f"{slot}.initials")
        resource: dict[str, Any] = {
            "resourceType": "MedicationAdministration",
            "status": "completed" if status == "given" else "not-done",
            "medicationCodeableConcept": {"text": med_text},
            "subject": {"reference": patient_url}, "context": {"reference": enc_url},
            "effectiveDateTime": when}
        if status != "given":
            resource["statusReason"] = [{"text": status}]
        if geo.get("scheduled"):
            resource["note"] = [{"text": f"scheduled {geo['scheduled']}"}]
        if initials:
            resource["performer"] = [{"actor": {"display": f"initials: {initials}"}}]
        docs = self.documents(bundle, form, patient_url, enc_url, item.fields)
        url = self.b.add(bundle, resource, self.b.system("item"), item.key)
        self.provenance(bundle, url, item.key, form, item.fields, when, initials, docs)
        return 1

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
        if role("specimen"):
            specimen["type"] = {"coding": [{"system": f"{self.b.base}:specimen", "code": role("specimen")}],
                                "text": role("specimen")}
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
                "code": {"coding": [{"system": f"{self.b.base}:lab-test", "code": test, "display": label}],
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
        # Patient and Encounter already carry what the registration says; keep the page as evidence.
        self.documents(bundle, item.form, patient_url, enc_url, item.fields)
        return 0

    # -- driver --
    def run(self) -> dict[str, Any]:
        from ..reconcile.worklist import items_by_form
        self.work = items_by_form(self.kit, [f.form_id for f in self.store.forms if f.captures], self.templates)
        for form in self.store.forms:
            if not form.captures or not touched_since(form, self.since):
                continue
            if not form.patient_key:
                self.pending.append({"form_id": form.form_id, "template": form.template, "item": None,
                                     "reason": "the form carries no patient identifier"})
                continue
            for item in self.items(form):
                mark = self.marks.get(item.key)
                if self.skip_entered and mark in ("entered", "not-needed"):
                    # typed in by a clerk already (or not needed): sending it too would duplicate it
                    self.skipped.append({"item": item.key, "status": mark, "patient_mrn": form.patient_key})
                    continue
                try:
                    n = self.export_item(item)
                except Unsettled as exc:
                    self.pending.append({"item": item.key, "form_id": form.form_id, "template": form.template,
                                         "kind": item.kind, "ward": form.row["ward"],
                                         "patient_mrn": form.patient_key,
                                         "downtime_mrn": form.row["downtime_mrn"], "reason": str(exc)})
                    continue
                if n:
                    self.exported.append({"item": item.key, "resources": n, "patient_mrn": form.patient_key})
        return {"bundles": {k: self.bundle_json(b) for k, b in sorted(self.bundles.items())},
                "pending": self.pending}

    def bundle_json(self, bundle: PatientBundle) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction",
                "identifier": {"system": self.b.system("bundle"), "value": bundle.key},
                "timestamp": now_iso(), "entry": bundle.entries}


def export_fhir(kit: Kit, out_dir: Path | str, ward: str | None = None, since: str | None = None,
                mrn_system: str | None = None, skip_entered: bool = False,
                tz: str | None = None, max_entries: int | None = None) -> dict[str, Any]:
    """Write OUT/bundle-<MRN>.json per patient and OUT/pending.json; every file mode 0600.

    With max_entries a patient's bundle bigger than that is written as self-contained parts
    (bundle-<MRN>.part<k>of<n>.json, see export/bundles.py), to be sent in order.

    File names come from fallbackkit/files.py: two patients never share a file (`A/1` and `A_1`).

    Bundles of an earlier export in OUT that this export does not rewrite are removed: after a
    downtime MRN is linked, its old bundle would otherwise be sent too.
    """
    out_dir = outside_kit(kit.path, out_dir, "an export")
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"{out_dir} is a file", hint="--format fhir writes a directory of bundles")
    job = FhirExport(kit, ward, since, mrn_system, skip_entered, tz)
    result = job.run()
    outputs = OutputFiles()
    pending_path = outputs.claim(out_dir / "pending.json")
    # every name is claimed before the first file is written: a clash refuses the export whole
    named = []
    for key, whole in result["bundles"].items():
        parts = split_transaction(whole, max_entries) if max_entries else [whole]
        for k, bundle in enumerate(parts, start=1):
            suffix = ".json" if len(parts) == 1 else f".part{k}of{len(parts)}.json"
            named.append((outputs.claim(out_dir / file_name("bundle-", key, suffix), f"the bundle of {key}"), bundle))
    files = [write_private(path, json.dumps(bundle, indent=1, ensure_ascii=False)) for path, bundle in named]
    write_private(pending_path, json.dumps(
        {"kit_id": kit.kit_id, "exported_at": now_iso(), "ward": ward, "since": since,
         "note": "not exported: still under review, in conflict, or incomplete on paper",
         "items": result["pending"], "skipped_entered": job.skipped}, indent=1, ensure_ascii=False))
    written = {f.name for f in files}
    stale = [p for p in out_dir.glob("bundle-*.json") if p.name not in written]
    for p in stale:
        p.unlink()
    return {"identity_notes": job.identity_notes, "tz": job.tz, "removed_stale": [p.name for p in stale], "skipped_entered": len(job.skipped),"bundles": len(files), "files": [str(f) for f in files], "pending_file": str(pending_path),
            "pending": len(result["pending"]), "items_exported": len(job.exported),
            "resources": sum(len(b["entry"]) for b in result["bundles"].values()), "patients": len(result["bundles"])}
