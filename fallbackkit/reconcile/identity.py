"""Downtime identifiers and their links to real ones.

Blank stock carries pool identifiers (downtime MRN, encounter, accession). After recovery a person
links each downtime MRN to the patient's real MRN; the kit only suggests, with a score. One real
MRN may absorb several downtime MRNs (the same patient registered twice during the outage); one
downtime MRN linked to two different real MRNs would split a patient's record, so it is refused.
Links are append-only: a wrong link is revoked by a new row, never edited.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

from ..errors import BadInput, Conflict, NotFound
from ..store.audit import append_audit
from ..store.transactions import atomic
from ..store.readings import undecided_sql
from ..store.kit import Kit, now_iso
from ..templates.values import date_or_none
from .state import current_links, current_reviews, iter_capture_values, load_registry

# Letters that Unicode does not decompose into a base letter plus an accent.
_FOLD = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ð": "d", "ħ": "h", "ı": "i", "ŀ": "l", "þ": "th",
                       "ß": "ss", "æ": "ae", "œ": "oe"})
NAME_FIELDS = ("patient_name", "last_name", "first_name")
MRN_PATTERN_KEY = "real_mrn_pattern"     # in kit_meta (migration m0022): the hospital's MRN format
DEFAULT_MRN_PATTERN = "[0-9]+"
MRN_MAX = 64
REASON_MAX = 500
BIRTH_FIELDS = ("patient_birth_date", "birth_date")
SEX_FIELDS = ("patient_sex", "sex")
WARD_FIELDS = ("ward",)


def normalize_name(text: str | None) -> list[str]:
    """Accent- and case-insensitive name tokens: 'Dupont-Lefèvre, José' -> ['dupont', 'lefevre', 'jose']."""
    if not text:
        return []
    plain = unicodedata.normalize("NFKD", text.casefold().translate(_FOLD))
    plain = "".join(ch for ch in plain if not unicodedata.combining(ch))
    return [t for t in re.split(r"[\W_]+", plain) if t]


def parse_date(text: Any) -> str | None:
    """A handwritten birth date as ISO, or None (the one rule: templates/values.py)."""
    day = date_or_none(text)
    return day.isoformat() if day else None


def transcribed_identity(kit: Kit, form_ids: list[str]) -> dict[str, dict[str, Any]]:
    """form_id -> {"name", "birth_date"} from what people transcribed on the forms' captures."""
    out: dict[str, dict[str, Any]] = {}
    if not form_ids:
        return out
    reviews = current_reviews(kit) if len(form_ids) > 1000 else None  # a few forms: their reviews only
    for start in range(0, len(form_ids), 1000):
        out.update(_transcribed(kit, form_ids[start:start + 1000], reviews))
    return out


def _transcribed(kit: Kit, form_ids: list[str], reviews: dict | None) -> dict[str, dict[str, Any]]:
    reg = load_registry(kit, form_ids)
    chosen = {}
    for fid in form_ids:
        for sid in reg.form_sheets.get(fid, []):
            if sid in reg.captures:
                for cid in reg.captures[sid]:
                    chosen[cid] = fid
    if reviews is None:
        from .summary import reviews_of_captures
        reviews = reviews_of_captures(kit.db.conn, chosen)
    out: dict[str, dict[str, Any]] = {}
    for cid, captured in iter_capture_values(kit, chosen, reviews):
        fid = chosen[cid]
        got = {n: v.value for n, v in captured.items()
               if (n in NAME_FIELDS or n in BIRTH_FIELDS or n in WARD_FIELDS) and v.source in ("transcribe", "correct", "confirm")
               and isinstance(v.value, str) and v.value.strip()}
        # sex is a mark: the machine's reading counts once it was sure of it (or a person decided)
        got.update({n: v.value for n, v in captured.items() if n in SEX_FIELDS and v.resolved
                    and isinstance(v.value, str) and v.value})
        entry = out.setdefault(fid, {"name": None, "birth_date": None, "sex": None, "ward": None})
        entry["sex"] = got.get("patient_sex") or got.get("sex") or entry["sex"]
        entry["ward"] = got.get("ward") or entry["ward"]
        name = got.get("patient_name")
        if not name and (got.get("last_name") or got.get("first_name")):
            name = ", ".join(p for p in (got.get("last_name"), got.get("first_name")) if p)
        if name:
            entry["name"] = name
        birth = got.get("patient_birth_date") or got.get("birth_date")
        if birth:
            entry["birth_date"] = parse_date(birth) or birth
    return out


def list_identities(kit: Kit, only: str | None = None) -> list[dict[str, Any]]:
    """Every downtime identifier in use, with its forms, link and transcribed name/birth date
    (only=VALUE: that one identifier alone, without reading every other one: the check and the link
    of one identity at the station)."""
    conn = kit.db.conn
    forms_of: dict[str, list[str]] = {}
    if only is None:
        rows = conn.execute("SELECT value, kind, form_id FROM downtime_ids ORDER BY kind, value").fetchall()
        found = conn.execute(  # three index searches (m0066), not a scan of every form
            "SELECT form_id, downtime_mrn, encounter, accession FROM forms WHERE downtime_mrn IS NOT NULL"
            " UNION SELECT form_id, downtime_mrn, encounter, accession FROM forms WHERE accession IS NOT NULL"
            " UNION SELECT form_id, downtime_mrn, encounter, accession FROM forms WHERE encounter >= 'DT'"
            " AND encounter < 'DU' AND encounter LIKE 'DT%'")
    else:
        rows = conn.execute("SELECT value, kind, form_id FROM downtime_ids WHERE value = ?", [only]).fetchall()
        found = conn.execute(
            "SELECT form_id, downtime_mrn, encounter, accession FROM forms WHERE downtime_mrn = ?"
            " UNION SELECT form_id, downtime_mrn, encounter, accession FROM forms WHERE accession = ?"
            " UNION SELECT form_id, downtime_mrn, encounter, accession FROM forms WHERE encounter = ?",
            [only, only, only])
    for fid, mrn, enc, acc in found:
        for value in (mrn, enc, acc):
            if value:
                forms_of.setdefault(value, []).append(fid)
    links = current_links(kit)
    idents = transcribed_identity(kit, sorted({r[2] for r in rows}))
    out = []
    for value, kind, fid in rows:
        form_ids = sorted(set(forms_of.get(value, [])) | {fid})
        name = birth = sex = ward = None
        for f in form_ids:
            info = idents.get(f) or {}
            name = name or info.get("name")
            birth = birth or info.get("birth_date")
            sex = sex or info.get("sex")
            ward = ward or info.get("ward")
        link = links.get(value)
        out.append({"downtime_mrn": value, "kind": kind, "form_ids": form_ids,
                    "linked_to": link["real_mrn"] if link else None,
                    "linked_by": link["actor"] if link else None, "linked_at": link["at"] if link else None,
                    "name": name, "birth_date": birth, "sex": sex, "ward": ward})
    return out


def _downtime_kind(kit: Kit, value: str) -> str | None:
    row = kit.db.conn.execute("SELECT kind FROM downtime_ids WHERE value = ?", [value]).fetchone()
    return row[0] if row else None


def real_mrn_pattern(kit: Kit) -> str:
    """The regular expression a real MRN must match as a whole (kit_meta; digits only by default)."""
    row = kit.db.conn.execute("SELECT value FROM kit_meta WHERE key = ?", [MRN_PATTERN_KEY]).fetchone()
    return row[0] if row else DEFAULT_MRN_PATTERN


def set_real_mrn_pattern(kit: Kit, pattern: str, actor: str) -> str:
    """Change the hospital's MRN format (audited). Refuses a pattern that does not compile or that
    an empty MRN would match."""
    pattern = (pattern or "").strip()
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise BadInput(f"{pattern!r} is not a regular expression: {exc}",
                       hint="for example [0-9]{6,10} (6 to 10 digits) or [A-Z]{2}[0-9]{6}") from None
    if not pattern or len(pattern) > 200 or compiled.fullmatch(""):
        raise BadInput(f"{pattern!r} would accept an empty MRN", hint="for example [0-9]{6,10}")
    conn = kit.db.conn
    with conn:
        before = real_mrn_pattern(kit)
        conn.execute("INSERT INTO kit_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                     [MRN_PATTERN_KEY, pattern])
        append_audit(conn, actor, "kit.mrn_format", MRN_PATTERN_KEY, {"pattern": before}, {"pattern": pattern})
    return pattern


def link_identity(kit: Kit, downtime_mrn: str, real_mrn: str, actor: str, reason: str | None,
                  confirmed: list[str] | None = None) -> int:
    """Record that a downtime MRN is this real MRN. Returns the link id (the existing one if the
    same link is already in place). Refuses a second, different real MRN (Conflict), and a real
    MRN that does not have the hospital's format (a typo would attach the patient to nobody).
    `confirmed` names the differences between paper and census a person looked at and accepted
    (see identity_preview); it is kept in the audit row."""
    downtime_mrn, real_mrn = downtime_mrn.strip().upper(), real_mrn.strip()
    if not real_mrn:
        raise BadInput("give the real MRN to link to")
    if reason is not None and len(reason) > REASON_MAX:
        raise BadInput(f"the reason is too long (at most {REASON_MAX} characters)")
    kind = _downtime_kind(kit, downtime_mrn)
    if kind is None:
        raise NotFound(f"{downtime_mrn} is not a downtime identifier of this kit",
                       hint="see `fallbackkit identities list`")
    if kind != "mrn":
        raise BadInput(f"{downtime_mrn} is a downtime {kind} number, not an MRN",
                       hint="link the downtime MRN printed on the same form")
    if _downtime_kind(kit, real_mrn.upper()) is not None:
        raise BadInput(f"{real_mrn} is itself a downtime identifier", hint="link to the patient's real MRN")
    pattern = real_mrn_pattern(kit)
    if len(real_mrn) > MRN_MAX or not re.fullmatch(pattern, real_mrn):
        raise BadInput(f"{real_mrn[:MRN_MAX]!r} does not look like a real MRN of this hospital "
                       f"(expected format: {pattern})",
                       hint="check the number on the wristband or in the registration; "
                            "IT sets the format with `fallbackkit identities mrn-format`")
    conn = kit.db.conn
    with atomic(conn):  # check and insert in one step: two clerks cannot both link
        link = current_links(kit).get(downtime_mrn)
        if link is not None:
            if link["real_mrn"] == real_mrn:
                return link["id"]
            raise Conflict(f"{downtime_mrn} is already linked to {link['real_mrn']} (by {link['actor']} at "
                           f"{link['at']}); refusing to link it to {real_mrn} as well",
                           hint=f"if the first link is wrong, undo it: `fallbackkit identities unlink {downtime_mrn}`")
        at = now_iso()
        cur = conn.execute("INSERT INTO identity_links (downtime_mrn, real_mrn, actor, reason, at) VALUES (?, ?, ?, ?, ?)",
                           [downtime_mrn, real_mrn, actor, reason, at])
        append_audit(conn, actor, "identity.link", f"downtime_mrn:{downtime_mrn}", None,
                     {"real_mrn": real_mrn, "reason": reason, "link_id": cur.lastrowid,
                      **({"mismatches_confirmed": list(confirmed)} if confirmed else {})})
        _refresh_summaries(kit)  # the forms of this downtime MRN, in the link's own transaction
        return cur.lastrowid


def unlink_identity(kit: Kit, downtime_mrn: str, actor: str, reason: str | None) -> int:
    """Revoke the current link of a downtime MRN (a new row; the old one stays in history)."""
    downtime_mrn = downtime_mrn.strip().upper()
    conn = kit.db.conn
    with atomic(conn):  # check and insert in one step: two clerks cannot both link
        link = current_links(kit).get(downtime_mrn)
        if link is None:
            raise NotFound(f"{downtime_mrn} is not linked", hint="see `fallbackkit identities list`")
        cur = conn.execute(
            "INSERT INTO identity_links (downtime_mrn, real_mrn, actor, reason, at, revokes) VALUES (?, ?, ?, ?, ?, ?)",
            [downtime_mrn, link["real_mrn"], actor, reason, now_iso(), link["id"]])
        append_audit(conn, actor, "identity.unlink", f"downtime_mrn:{downtime_mrn}",
                     {"real_mrn": link["real_mrn"], "link_id": link["id"]}, {"reason": reason})
        _refresh_summaries(kit)
        return cur.lastrowid


def _refresh_summaries(kit: Kit) -> None:
    from .summary import refresh
    refresh(kit)


def _score(name_tokens: list[str], birth: str | None, patient: dict[str, Any]) -> tuple[float, str]:
    census_tokens = normalize_name(f"{patient['last_name']} {patient['first_name']}")
    why = []
    name_score = 0.0
    if name_tokens and census_tokens:
        a, b = set(name_tokens), set(census_tokens)
        name_score = len(a & b) / len(a | b)
        why.append(f"name tokens {len(a & b)}/{len(a | b)} in common")
    birth_score = 0.0
    if birth and patient.get("birth_date"):
        if birth == patient["birth_date"]:
            birth_score = 1.0
            why.append("same birth date")
        elif len(birth) == 10 and birth[:4] == patient["birth_date"][:4] and \
                birth[5:7] == patient["birth_date"][8:10] and birth[8:10] == patient["birth_date"][5:7]:
            birth_score = 0.5
            why.append("birth date with day and month swapped")
        else:
            why.append("different birth date")
    if not birth:
        return round(0.6 * name_score, 3), "; ".join(why + ["no birth date transcribed"])
    if not name_tokens:  # a birth date alone: the same date is worth a look (it never reached 0.5 before)
        return round(0.5 * birth_score, 3), "; ".join(why + ["no name transcribed"])
    return round(0.6 * name_score + 0.4 * birth_score, 3), "; ".join(why)


def suggest_identities(kit: Kit, min_score: float = 0.5, per_identity: int = 3,
                       identities: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Candidate links for unlinked downtime MRNs, best first. Never applied without a person.
    identities: list_identities(kit), when the caller has it already."""
    conn = kit.db.conn
    snap = conn.execute("SELECT id FROM census_snapshots ORDER BY id DESC LIMIT 1").fetchone()
    if snap is None:
        return []
    patients = [dict(zip(("mrn", "last_name", "first_name", "birth_date", "ward", "bed", "sex"), r)) for r in conn.execute(
        "SELECT mrn, last_name, first_name, birth_date, ward, bed, sex FROM patients WHERE snapshot_id = ?", [snap[0]])]
    out = []
    for ident in identities if identities is not None else list_identities(kit):
        if ident["kind"] != "mrn" or ident["linked_to"] or not (ident["name"] or ident["birth_date"]):
            continue
        tokens = normalize_name(ident["name"])
        scored = []
        for p in patients:
            score, why = _score(tokens, ident["birth_date"], p)
            if score >= min_score:
                scored.append({"downtime_mrn": ident["downtime_mrn"], "real_mrn": p["mrn"], "score": score,
                               "name": ident["name"], "birth_date": ident["birth_date"],
                               "census_name": f"{p['last_name']}, {p['first_name']}",
                               "census_birth_date": p["birth_date"], "census_sex": p["sex"],
                               "census_ward": p["ward"], "why": why})
        scored.sort(key=lambda s: (-s["score"], s["real_mrn"]))
        out += scored[:per_identity]
    out.sort(key=lambda s: (-s["score"], s["downtime_mrn"], s["real_mrn"]))
    return out


def census_patient(kit: Kit, real_mrn: str) -> dict[str, Any] | None:
    """The patient with this MRN in the latest census snapshot, or None."""
    row = kit.db.conn.execute(
        "SELECT p.mrn, p.last_name, p.first_name, p.birth_date, p.sex, p.ward, p.bed FROM patients p"
        " WHERE p.snapshot_id = (SELECT MAX(id) FROM census_snapshots) AND p.mrn = ?", [real_mrn.strip()]).fetchone()
    if row is None:
        return None
    return {"mrn": row[0], "name": f"{row[1]}, {row[2]}", "birth_date": row[3], "sex": row[4],
            "ward": row[5], "bed": row[6]}


def census_names(kit: Kit) -> dict[str, str]:
    """Real MRN -> "Last, First" from the latest census snapshot (clerks know patients by name)."""
    return {r[0]: f"{r[1]}, {r[2]}" for r in kit.db.conn.execute(
        "SELECT mrn, last_name, first_name FROM patients WHERE snapshot_id = (SELECT MAX(id) FROM census_snapshots)")}


def patient_name(kit: Kit, mrn: str | None, downtime_mrn: str | None) -> str | None:
    """The census name of a form's patient (a linked downtime MRN counts as its real MRN)."""
    if not mrn and downtime_mrn:
        link = current_links(kit).get(downtime_mrn)
        mrn = link["real_mrn"] if link else None
    if not mrn:
        return None
    row = kit.db.conn.execute("SELECT last_name, first_name FROM patients WHERE mrn = ? ORDER BY snapshot_id DESC"
                              " LIMIT 1", [mrn]).fetchone()
    return f"{row[0]}, {row[1]}" if row else None


def unlinked_count(kit: Kit) -> int:
    """Downtime MRNs on returned paper that nobody has linked to a real patient yet."""
    return sum(1 for i in list_identities(kit) if i.get("kind") == "mrn" and not i.get("linked_to"))


def _sex_letter(value: Any) -> str | None:
    """'female' / 'F' / 'f' -> 'F'; unknown or nothing -> None (nothing to compare)."""
    if not isinstance(value, str) or not value.strip() or value.strip().casefold() in ("unknown", "u"):
        return None
    return {"female": "F", "male": "M", "other": "X"}.get(value.strip().casefold(), value.strip()[:1].upper())


def identity_preview(kit: Kit, downtime_mrn: str, real_mrn: str) -> dict[str, Any]:
    """What the paper says next to the census patient a downtime MRN would be linked to.

    `checks` holds, per item (name, birth_date, sex, ward), "same", "differs", "partly" (a name
    sharing some but not all parts), "not_a_date" (a birth date that does not read as a date, e.g.
    a name written in the wrong box) or "unknown" (nothing to compare). `mismatches` lists the
    items that need a person's explicit confirmation; a real MRN not in the census is one too."""
    downtime_mrn, real_mrn = downtime_mrn.strip().upper(), real_mrn.strip()
    ident = next((i for i in list_identities(kit, only=downtime_mrn) if i["downtime_mrn"] == downtime_mrn), None)
    if ident is None:
        raise NotFound(f"{downtime_mrn} is not a downtime identifier of this kit",
                       hint="see `fallbackkit identities list`")
    paper = {"name": ident["name"], "birth_date": ident["birth_date"], "sex": ident["sex"], "ward": ident["ward"]}
    census = census_patient(kit, real_mrn)
    checks: dict[str, str] = {}
    if census is None:
        checks = dict.fromkeys(paper, "unknown")
    else:
        a, b = set(normalize_name(paper["name"])), set(normalize_name(census["name"]))
        checks["name"] = "unknown" if not a else "same" if a == b else "partly" if a & b else "differs"
        if not paper["birth_date"]:
            checks["birth_date"] = "unknown"
        elif parse_date(paper["birth_date"]) is None:
            checks["birth_date"] = "not_a_date"
        else:
            checks["birth_date"] = "same" if parse_date(paper["birth_date"]) == census["birth_date"] else "differs"
        ps, cs = _sex_letter(paper["sex"]), _sex_letter(census["sex"])
        checks["sex"] = "unknown" if not ps or not cs else "same" if ps == cs else "differs"
        pw, cw = (paper["ward"] or "").strip().casefold(), (census["ward"] or "").strip().casefold()
        checks["ward"] = "unknown" if not pw or not cw else "same" if pw == cw else "differs"
    mismatches = [k for k, v in checks.items() if v in ("differs", "partly", "not_a_date")]
    if census is None:
        mismatches.insert(0, "not_in_census")
    return {"downtime_mrn": downtime_mrn, "real_mrn": real_mrn, "paper": paper, "census": census,
            "checks": checks, "mismatches": mismatches, "form_ids": ident["form_ids"],
            "linked_to": ident["linked_to"]}


NO_SUGGESTION_WORDS = {
    "not_returned": "no form with this number was scanned back yet",
    "waiting": "its name and birth date wait in the review queue: transcribe them first",
    "not_written": "no name or birth date was written or transcribed on its forms",
    "no_match": "no census patient is close to what the paper says",
}


def no_suggestion_reason(kit: Kit, ident: dict[str, Any]) -> str:
    """Why a downtime MRN has no suggestion: 'not_returned' (none of its forms was scanned back),
    'waiting' (its name / birth date still wait for a person in the review queue), 'not_written'
    (nothing was written or transcribed in those boxes) or 'no_match' (no census patient is close)."""
    conn = kit.db.conn
    form_ids = ident["form_ids"]
    marks = ",".join("?" * len(form_ids))
    if not conn.execute(f"SELECT 1 FROM captures WHERE form_id IN ({marks}) AND status = 'read' LIMIT 1",
                        form_ids).fetchone():
        return "not_returned"
    if ident["name"] or ident["birth_date"]:
        return "no_match"
    names = (*NAME_FIELDS, *BIRTH_FIELDS)
    waiting = conn.execute(
        f"SELECT COUNT(*) FROM readings rd JOIN captures c ON c.capture_id = rd.capture_id"
        f" WHERE c.form_id IN ({marks}) AND rd.field IN ({','.join('?' * len(names))}) AND rd.status = 'review'"
        f" AND {undecided_sql('rd')}", [*form_ids, *names]).fetchone()[0]
    return "waiting" if waiting else "not_written"
