"""Field and option labels in the clerk's language, from the kit's templates.

Readings carry field names (`diagnosis`, `c3.pulse`, `m1.s2.status`); a clerk should read what is
printed on the form ("Clinical information / diagnosis", "Pulse · 3", "Status"). Unknown names fall
back to the name itself, never to nothing.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

_CACHE: dict[tuple[str, str, int], dict[str, Any]] = {}
CODE_BOX = {"held": {"en": "Held: reason code", "fr": "Suspendu : code du motif", "nl": "Uitgesteld: code van de reden"},
            "reason": {"en": "PRN: reason code", "fr": "Si nécessaire : code du motif", "nl": "Indien nodig: code van de reden"}}
_LOCK = threading.Lock()


def _pick(label: dict[str, str] | None, lang: str) -> str | None:
    if not label:
        return None
    return label.get(lang) or label.get("en")


def _build(kit_path: Path, template: str, version: int, lang: str) -> dict[str, Any]:
    from ..templates.model import load_templates
    fields: dict[str, str] = {}
    options: dict[str, dict[Any, str]] = {}
    try:
        found = load_templates(Path(kit_path) / "form_templates")
    except Exception:  # a broken template must not take the station down: names are shown instead
        return {"fields": fields, "options": options}
    t = found.get(f"{template}@{version}") or found.get(template)
    if t is None:
        return {"fields": fields, "options": options}
    slot_specs: dict[str, Any] = {}
    for section in t.sections:
        for spec in section.fields:
            fields[spec.name] = _pick(spec.label, lang) or spec.name
            options[spec.name] = {o.value: _pick(o.label, lang) or o.value for o in spec.options}
        if section.grid is not None:
            col = _pick(section.grid.column_label, lang) or ""
            for spec in section.grid.rows:
                for c in range(1, section.grid.columns + 1):
                    name = f"c{c}.{spec.name}"
                    fields[name] = f"{_pick(spec.label, lang) or spec.name} · {col} {c}".strip()
                    options[name] = {o.value: _pick(o.label, lang) or o.value for o in spec.options}
        if section.medications is not None:
            med = section.medications
            slot_specs["status"] = (_pick(med.status.label, lang) or "status",
                                    {o.value: _pick(o.label, lang) or o.value for o in med.status.options})
            for key in ("given", "time", "initials", "order", "prescriber", "ordered"):
                if key in med.labels:
                    slot_specs[key] = (_pick(med.labels[key], lang) or key, {})
            # the code boxes are labelled "?" on paper: the clerk reads what the code is for
            for key, codes in (("held", med.held_codes), ("reason", med.prn_reasons)):
                if codes:
                    slot_specs[key] = (CODE_BOX[key].get(lang, CODE_BOX[key]["en"]),
                                       {o.value: _pick(o.label, lang) or o.value for o in codes})
            if med.prn_effect is not None:
                slot_specs["effect"] = (_pick(med.prn_effect.label, lang) or "effect",
                                        {o.value: _pick(o.label, lang) or o.value for o in med.prn_effect.options})
        if section.legend is not None:
            title = _pick(section.title, lang) or ""
            for k in range(1, section.legend.rows + 1):
                for part in ("initials", "name", "signature"):
                    fields[f"l{k}.{part}"] = f"{_pick(section.legend.labels[part], lang) or part} · {title} {k}"
    return {"fields": fields, "options": options, "slots": slot_specs, "title": _pick(t.title, lang), "lang": lang}


# A medication section's rows and slots are named m1 (census medication 1), p1 (as-needed 1), n1 (new
# order 1), s2 (its second slot) by the layout: a clerk reads them in words.
ROWS = {"m": {"en": "medication {n}", "fr": "médicament {n}", "nl": "medicatie {n}"},
        "p": {"en": "as needed {n}", "fr": "si nécessaire {n}", "nl": "indien nodig {n}"},
        "n": {"en": "new order {n}", "fr": "nouvelle prescription {n}", "nl": "nieuw voorschrift {n}"},
        "s": {"en": "dose {n}", "fr": "prise {n}", "nl": "toediening {n}"}}
# keys of a re-entry item's values that are no field of the form (reconcile/worklist.py)
ITEM_KEYS = {
    "medication": {"en": "Medication", "fr": "Médicament", "nl": "Medicatie"},
    "dose": {"en": "Dose", "fr": "Dose", "nl": "Dosis"},
    "route": {"en": "Route", "fr": "Voie", "nl": "Toedieningsweg"},
    "frequency": {"en": "Frequency", "fr": "Fréquence", "nl": "Frequentie"},
    "census_line": {"en": "Line in the census", "fr": "Ligne du recensement", "nl": "Regel in de census"},
    "scheduled": {"en": "Scheduled", "fr": "Prévu", "nl": "Gepland"},
    "prn": {"en": "As needed", "fr": "Si nécessaire", "nl": "Indien nodig"},
    "slot": {"en": "Place on the sheet", "fr": "Place sur la feuille", "nl": "Plaats op het blad"},
    "row": {"en": "Place on the sheet", "fr": "Place sur la feuille", "nl": "Plaats op het blad"},
    "order_text": {"en": "Order", "fr": "Prescription", "nl": "Voorschrift"},
    "performer": {"en": "Given by", "fr": "Donné par", "nl": "Gegeven door"},
    "performer_unresolved": {"en": "Given by: not sure", "fr": "Donné par : incertain", "nl": "Gegeven door: onzeker"},
    "held_reason": {"en": "Held: reason code", "fr": "Suspendu : code du motif", "nl": "Uitgesteld: code van de reden"},
    "held_reason_text": {"en": "Held: reason", "fr": "Suspendu : motif", "nl": "Uitgesteld: reden"},
    "prn_reason": {"en": "As needed: reason code", "fr": "Si nécessaire : code du motif",
                   "nl": "Indien nodig: code van de reden"},
    "prn_reason_text": {"en": "As needed: reason", "fr": "Si nécessaire : motif", "nl": "Indien nodig: reden"},
}


def place_words(key: str, lang: str) -> str | None:
    """A medication row or slot name in words ("m1.s3" -> "medication 1, dose 3"); None when the
    name is not one (a grid column "c3", a field)."""
    import re
    parts = key.split(".")
    if not parts or not all(re.fullmatch(r"[mpns]\d+", p) for p in parts) or parts[0][0] == "s":
        return None
    return ", ".join(ROWS[p[0]].get(lang, ROWS[p[0]]["en"]).format(n=p[1:]) for p in parts)


def labels(kit_path: Path, template: str | None, version: int | None, lang: str) -> dict[str, Any]:
    if not template:
        return {"fields": {}, "options": {}, "slots": {}}
    key = (template, lang, int(version or 0))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _build(kit_path, template, int(version or 0), lang)
        return _CACHE[key]


def field_label(table: dict[str, Any], name: str) -> str:
    if name in table["fields"]:
        return table["fields"][name]
    last = name.rsplit(".", 1)[-1]
    slot = table.get("slots", {}).get(last)
    if slot:
        place = name.rsplit(".", 1)[0]
        return f"{slot[0]} · {place_words(place, table.get('lang', 'en')) or place}"
    return name


def option_labels(table: dict[str, Any], name: str) -> dict[Any, str]:
    if name in table["options"] and table["options"][name]:
        return table["options"][name]
    slot = table.get("slots", {}).get(name.rsplit(".", 1)[-1])
    return slot[1] if slot else {}


def value_label(table: dict[str, Any], key: str) -> str:
    """Label for a key of a re-entry item's values: a field of the form (`diagnosis`), a grid row
    (`pulse`, without its column), a MAR slot part (`status`), else the key in words."""
    if key in table["fields"]:
        return table["fields"][key]
    for name, text in table["fields"].items():
        if name.startswith("c1.") and name[3:] == key:
            return text.split(" · ")[0]
    slot = table.get("slots", {}).get(key)
    if slot:
        return slot[0]
    if key in ITEM_KEYS:
        return ITEM_KEYS[key].get(table.get("lang", "en"), ITEM_KEYS[key]["en"])
    return key.replace("_", " ").capitalize()


def form_position(table: dict[str, Any], key: str) -> int:
    """Where a re-entry value's key sits on the printed form (fields are labelled in form order),
    so values are shown as the clerk reads the paper, not alphabetically. Unknown keys go last."""
    order = table.get("_order")
    if order is None:  # built once per label table (not on every call)
        order = table["_order"] = {name: i for i, name in enumerate(table["fields"])}
    if key in order:
        return order[key]
    if f"c1.{key}" in order:
        return order[f"c1.{key}"]
    slots = list(table.get("slots", {}))
    if key in slots:
        return len(order) + slots.index(key)
    return len(order) + len(slots) + 1


def form_title(table: dict[str, Any], template: str | None) -> str:
    """The form's printed title in the clerk's language ("Laboratory request"), else its name."""
    return table.get("title") or template or ""
