"""Why a reading goes to a person, or a page to quarantine: one code and its parameters per reason.

This module is the one owner of the reason codes. The engine writes a reading's reason as the
English sentences of its codes, joined by "; " (readable in the store, the same words as before
the codes existed, so old rows read the same); `parse` gives back the codes and parameters of any
stored reason, exactly (each part must match a code's whole sentence, never a word in it), and the
review station translates them at display (`fallbackkit.review.i18n.reason_text`). Other stages ask
for codes (`codes`), never for words.
"""
from __future__ import annotations

import functools
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
    return _data(reason, quarantine)


@functools.lru_cache(maxsize=4096)
def _data(reason: str, quarantine: bool) -> str:
    """data() of a reason, made once per distinct reason (a page stores the same few reasons ~20
    times: 0.25 ms a MAR page; the text, an immutable str, is a function of the reason alone)."""
    parts = [{"code": reason, "params": {}}] if quarantine else parse(reason)
    return json.dumps(parts, ensure_ascii=False, sort_keys=True)


# A quarantined page's detail, beside its reason: code -> English sentence. The text stored in
# `quarantine.detail` (logs, `quarantine list --json`, exports) is this sentence with its parameters;
# `quarantine.detail_codes` holds the code and parameters (parse_detail), which the station, the
# scan summary and `quarantine list` say in the clerk's or the kit's language. A {why} parameter is
# itself a detail (why the corner marks were not found); {mark} and {marks} name corner marks
# ('tl', 'tr', 'br', 'bl'). The payload's own messages (fallbackkit/payload.py, a PayloadError's
# text) are details too.
DETAILS: dict[str, str] = {
    "no_code_found": "no readable sheet code on the page",
    "not_our_qr": "a QR code was found but it is not a fallbackkit sheet code ({text})",
    "other_kit": "the sheet belongs to another kit ({kit}; this kit is {this_kit})",
    "two_codes": "two different sheet codes on one page",
    "not_registered": "sheet {sheet} is not in this kit's registry of printed sheets",
    "marks_after_code": "the code was read but the corner marks were not: {why}",
    "marks_not_found": "corner marks not found: {why}",
    "scanned_mirrored": "the code of sheet {sheet} reads mirrored and as dark as print: a page scanned mirrored?"
                        " re-scan it",
    "back_with_writing": "the back of sheet {sheet} (its code shows through the paper), with writing on it:"
                         " look at the paper",
    "back_with_ink": "the back of sheet {sheet} (page {page}, its front shows through the paper) with ink on it"
                     " that the front does not explain ({mm} mm mark): something was written on the back?"
                     " look at the paper",
    "cover_back_with_ink": "the back of the ward pack's cover sheet (page {page}, its front shows through the"
                           " paper) with ink on it that the front does not explain ({mm} mm mark): something"
                           " was written on the back? look at the paper",
    "reader_failed": "the reader failed on this page: {error}",
    # fallbackkit/payload.py (PayloadError)
    "not_sheet_code": "not a fallbackkit sheet code",
    "malformed_code": "malformed fallbackkit sheet code",
    "page_out_of_range": "malformed fallbackkit sheet code (page out of range)",
    "code_other_kit": "sheet belongs to another kit ({kit}, this kit is {this_kit})",
    "signature_fails": "sheet code signature does not verify (forged or damaged code)",
    "not_cover_code": "not a fallbackkit cover code",
    "malformed_cover": "malformed fallbackkit cover code",
    "cover_other_kit": "cover sheet of another kit ({kit}, this kit is {this_kit})",
    "cover_signature_fails": "cover code signature does not verify (forged or damaged code)",
    # why the corner marks were not found (locate.MarksNotFound): the {why} of the two above
    "marks_missing": "corner marks {marks} not found near where the code predicts them",
    "mark_missing": "corner mark {mark} not found near where the code predicts it, and the other three do not"
                    " agree with the code",
    "no_outline": "no four marks found that make a page outline of the right size",
    "marks_disagree": "the corner marks and the code disagree by {mm} mm: a mark is missing or the sheet is folded",
    "fewer_marks": "fewer than four corner marks found",
    "marks_not_in_corners": "corner marks not found in the four corners of the image",
    "marks_sizes": "corner marks of different sizes: not the four marks of one sheet",
    "hole_unclear": "the holed corner mark (bottom-right) cannot be told apart",
    "not_an_outline": "corner marks do not form a page outline",
    "page_shape": "corner marks give an implausible page shape",
    "hole_elsewhere": "the holed corner mark is at {mark}, not bottom-right: marks disagree with the code",
}
NESTED = {"why"}  # parameters that are a detail themselves


def _mark_names(keys: Any) -> str:
    return ", ".join(repr(k) for k in ([keys] if isinstance(keys, str) else keys))


def detail(code: str, **params: Any) -> str:
    """The English sentence of one detail. mark: a corner mark's key, marks: several; why: a detail."""
    if "mark" in params:
        params["mark"] = _mark_names(params["mark"])
    if "marks" in params:
        params["marks"] = _mark_names(params["marks"])
    return DETAILS[code].format(**params)


def _detail_pattern(code: str) -> re.Pattern:
    text = re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?P<{m.group(1)}>.+?)", re.escape(DETAILS[code]))
    return re.compile(f"^{text}$", re.S)


_DETAIL_PATTERNS = [(code, _detail_pattern(code)) for code in DETAILS]


def parse_detail(text: str | None) -> dict[str, Any] | None:
    """The code and parameters of a stored detail ({"code", "params"}), a {why} parsed in turn.
    Text that is no code's sentence (an older wording) is {"code": "other", "params": {"text"}}."""
    if not text:
        return None
    for code, pattern in _DETAIL_PATTERNS:
        m = pattern.match(text)
        if m:
            params: dict[str, Any] = dict(m.groupdict())
            for name in NESTED & params.keys():
                params[name] = parse_detail(params[name])
            return {"code": code, "params": params}
    return {"code": "other", "params": {"text": text}}


def detail_data(text: str | None) -> str | None:
    """A stored detail as data, for the `quarantine.detail_codes` column (JSON of parse_detail)."""
    parsed = parse_detail(text)
    return None if parsed is None else json.dumps(parsed, ensure_ascii=False, sort_keys=True)


MARK_KEY = re.compile(r"'(tl|tr|br|bl)'")


def mark_keys(value: str) -> list[str]:
    """The corner marks a {mark} or {marks} parameter names, in order ("'tl', 'br'" -> [tl, br])."""
    return MARK_KEY.findall(value or "")


__all__ = ["DETAILS", "ENGLISH", "MULTI_MARK", "PAGE_CODES", "QUARANTINE", "codes", "data", "detail", "detail_data",
           "english", "join", "mark_keys", "parse", "parse_detail"]
