"""Why a reading goes to a person, or a page to quarantine: one code and its parameters per reason.

This module is the one owner of the reason codes. The engine writes a reading's reason as the
English sentences of its codes, joined by "; " (readable in the store, the same words as before
the codes existed, so old rows read the same); `parse` gives back the codes and parameters of any
stored reason, exactly (each part must match a code's whole sentence, never a word in it), and the
review station translates them at display (`fallbackkit.review.i18n.reason_text`). Other stages ask
for codes (`codes`), never for words.
"""
from __future__ import annotations

import json
import re
from typing import Any

# code -> English sentence; {option} parts are optional (a choice names the option, a checkbox not)
ENGLISH: dict[str, str] = {
    "faint_mark": "faint mark",
    "half_outside": "mark half outside the box",
    "ambiguous_mark": "faint or ambiguous mark",
    "two_marked": "two options marked",
    "n_marked": "{n} options marked",
    "mark_and_cancelled": "a mark next to a cancelled box",
    "corrected": "corrected on paper",   # a note on an accepted reading: one box cancelled, another marked
    "to_transcribe": "to transcribe",
    "faint_writing": "faint marks in the field",
    "image_only": "kept as image only",  # a note on an accepted reading: the template says transcribe: no
    "covered": "covered or not visible",
    "weak_corner": "near a missing corner mark",
    "poor_fit": "poor page fit ({mm} mm)",
    "low_contrast": "low contrast page ({levels} grey levels)",
    "page_dark": "page mostly dark ({percent}%)",
    "page_covered": "part of the page covered or folded ({covered} of {fields} fields)",
    "unknown_type": "unknown field type '{type}'",
}
WITH_OPTION = {"faint_mark", "half_outside", "ambiguous_mark"}
PAGE_CODES = {"poor_fit", "low_contrast", "page_dark", "page_covered"}
MULTI_MARK = {"two_marked", "n_marked"}
# quarantine reasons are codes already (captures put aside); their sentences live in review/i18n
QUARANTINE = ("no_code", "bad_signature", "foreign_kit", "unknown_sheet", "no_marks", "unreadable")


def english(code: str, **params: Any) -> str:
    """The English sentence of one reason."""
    option = params.pop("option", None)
    text = ENGLISH[code].format(**params)
    return f"{text} ({option})" if option is not None and code in WITH_OPTION else text


def join(*parts: str | None) -> str | None:
    kept = [p for p in parts if p]
    return "; ".join(kept) if kept else None


def _pattern(code: str) -> re.Pattern:
    text = re.escape(ENGLISH[code])
    text = re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?P<{m.group(1)}>.+?)", text)
    if code in WITH_OPTION:
        text += r"(?: \((?P<option>.+)\))?"
    return re.compile(f"^{text}$")


_PATTERNS = [(code, _pattern(code)) for code in ENGLISH]


def parse(reason: str | None) -> list[dict[str, Any]]:
    """The codes and parameters of a stored reason. A part that is no code's sentence (a reason
    written by hand, or by a version that had other words) is kept as {"code": "other", "text"}."""
    out: list[dict[str, Any]] = []
    for part in (reason or "").split("; "):
        if not part:
            continue
        for code, pattern in _PATTERNS:
            m = pattern.match(part)
            if m:
                out.append({"code": code, "params": {k: v for k, v in m.groupdict().items() if v is not None}})
                break
        else:
            out.append({"code": "other", "params": {"text": part}})
    return out


def codes(reason: str | None) -> set[str]:
    return {r["code"] for r in parse(reason)}


def data(reason: str | None, quarantine: bool = False) -> str | None:
    """A stored reason as data, for the `reason_codes` column: JSON of its codes and parameters
    (parse), or None without a reason. A quarantine reason is a code already."""
    if not reason:
        return None
    parts = [{"code": reason, "params": {}}] if quarantine else parse(reason)
    return json.dumps(parts, ensure_ascii=False, sort_keys=True)


__all__ = ["ENGLISH", "MULTI_MARK", "PAGE_CODES", "QUARANTINE", "codes", "data", "english", "join", "parse"]
