"""What a clerk types goes through the same rules as the handwriting suggestions.

The rules are not here: parsing and plausibility are templates/values.py (the one parser), ranges
come from the field's template (FieldSpec.range). This module only picks which rule applies to a
reading and tells the station whether a typed value is refused (it does not read as what the field
holds: "Dupont" in a date box) or implausible (a temperature of 96: saved only when the clerk
confirms, and the reason is recorded with the decision).
"""
from __future__ import annotations

import datetime as _dt
import re
import threading
from pathlib import Path
from typing import Any

from ..errors import BadInput
from ..templates import values as v

_CELL = re.compile(r"c\d+\.")
_LOCK = threading.Lock()
_TEMPLATES: dict[tuple[str, str, int], Any] = {}


def _template(kit_path: Path, name: str | None, version: int | None):
    if not name:
        return None
    key = (str(kit_path), name, int(version or 0))
    with _LOCK:
        if key not in _TEMPLATES:
            from ..templates.model import load_templates
            try:
                found = load_templates(Path(kit_path) / "form_templates")
            except Exception:  # a broken template must not stop the clerk: the format rules still apply
                found = {}
            _TEMPLATES[key] = found.get(f"{name}@{int(version or 0)}") or found.get(name)
        return _TEMPLATES[key]


def check_typed(kit_path: Path, detail: dict[str, Any], text: str | None) -> str | None:
    """None when the typed text is plausible for the reading's field, else the reason it is not
    (a person must confirm it). Raises BadInput when the text does not read as the field's kind."""
    problem = typed_problem(kit_path, detail, text)
    return None if problem is None else str(problem)


def typed_problem(kit_path: Path, detail: dict[str, Any], text: str | None) -> v.ValueProblem | None:
    """check_typed's answer as the ValueProblem (code and parameters, for the station to say it in
    the clerk's language). The BadInput raised carries its problem too (exc.problem)."""
    if text is None or not text.strip():
        return None
    ftype, fmt = detail["type"], (detail.get("extra") or {}).get("format")
    try:
        if ftype == "number":
            number = v.parse_number(text)
            template = _template(kit_path, detail["capture"].get("template"), detail["capture"].get("version"))
            name = detail["field"]
            spec = template.spec(name[_CELL.match(name).end():] if _CELL.match(name) else name) if template else None
            if spec is not None and getattr(spec, "range", None):
                v.check_range(number, spec.range[0], spec.range[1], text)
        elif ftype == "datetime" and fmt == "date":
            v.check_date_window(v.parse_date(text), latest=_dt.date.today(), text=text)
        elif ftype == "datetime" and fmt == "time":
            v.parse_time(text)
        elif ftype == "datetime":
            moment = v.parse_datetime(text)
            v.check_date_window(moment.date(), latest=_dt.date.today(), text=text)
    except v.ValueProblem as problem:
        if problem.code in ("out_of_range", "date_out_of_window"):
            return problem
        refused = BadInput(str(problem), hint="type it as written on the paper, or choose Illegible")
        refused.problem = problem  # type: ignore[attr-defined]
        raise refused from None
    return None
