"""The one reading of handwritten values: dates, times, date-times and numbers from the paper.

The worklist, the identity screen, the FHIR export, the review station and the digit suggestions
all parse what a person wrote (or a clerk typed) through these functions, so that a value means the
same thing everywhere. The rules, chosen to fail closed:

- dates: ``YYYY-MM-DD``; day first ``D/M/YYYY``, ``D-M-YYYY``, ``D.M.YYYY``, ``D M YYYY``; the eight
  comb-box digits ``DDMMYYYY``. Two-digit years are refused (``28/11/26``: 1926 or 2026 is not
  guessed), so are impossible calendar dates (``31/02/2026``) and years before 1900.
- times: ``H:MM``, ``HH:MM``, ``HHhMM``, ``HH.MM``, ``HH MM`` and the four comb-box digits ``HHMM``;
  00-23 hours, 00-59 minutes. ``24:00`` is refused: it is a day boundary a person must place.
- date-times: a date and a time separated by spaces or ``T``; ISO seconds (``:SS``) are allowed,
  a zone offset is not (paper carries wall-clock times; the kit's zone is applied later).
- numbers: digits with at most one ``.`` or ``,`` as decimal separator, optional leading minus.

Each parser raises :class:`ValueProblem` (a ``ValueError``) with a code, its parameters and an
English message; ``*_or_none`` variants return ``None`` instead.
"""
from __future__ import annotations

import datetime as _dt
import re
from typing import Any

_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_DAY_FIRST = re.compile(r"(\d{1,2})\s*([/.\-]|\s)\s*(\d{1,2})\s*\2\s*(\d{2,4})")
_COMB_DATE = re.compile(r"(\d{2})(\d{2})(\d{4})")
_TIME = re.compile(r"(\d{1,2})\s*(?:[:h.]|\s)\s*(\d{2})|(\d{2})(\d{2})", re.IGNORECASE)
_DATETIME = re.compile(r"(.+?)(?:\s*T\s*|\s+)(\d{1,2}\s*(?:[:h.]|\s)\s*\d{2}|\d{4})(?::(\d{2}))?", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")
EARLIEST_YEAR = 1900


class ValueProblem(ValueError):
    """A handwritten value that does not read as what the field holds.

    ``code`` is stable (for translations and tests), ``params`` fill the message.
    """

    def __init__(self, code: str, text: str, message: str, **params: Any):
        super().__init__(message)
        self.code = code
        self.text = text
        self.params = params


def _text(value: Any, what: str) -> str:
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        raise ValueProblem("blank", "" if value is None else str(value), f"the {what} is blank")
    return str(value).strip()


def parse_date(value: Any) -> _dt.date:
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    text = _text(value, "date")
    m = _ISO_DATE.fullmatch(text)
    if m:
        y, mo, d = (int(g) for g in m.groups())
    elif m := _DAY_FIRST.fullmatch(text):
        if len(m.group(4)) != 4:
            raise ValueProblem("two_digit_year", text, f"date {text!r} has a two-digit year: write the year in full")
        d, mo, y = int(m.group(1)), int(m.group(3)), int(m.group(4))
    elif m := _COMB_DATE.fullmatch(text):
        d, mo, y = (int(g) for g in m.groups())
    else:
        raise ValueProblem("not_a_date", text, f"{text!r} is not a date (day/month/year)")
    try:
        day = _dt.date(y, mo, d)
    except ValueError:
        raise ValueProblem("no_such_date", text, f"{text!r} is not a calendar date") from None
    if y < EARLIEST_YEAR:
        raise ValueProblem("date_too_early", text, f"date {text!r} is before {EARLIEST_YEAR}", earliest=EARLIEST_YEAR)
    return day


def parse_time(value: Any) -> _dt.time:
    if isinstance(value, _dt.time):
        return value
    text = _text(value, "time")
    m = _TIME.fullmatch(text)
    if not m:
        raise ValueProblem("not_a_time", text, f"{text!r} is not a time (hours:minutes)")
    hh, mm = (int(m.group(1)), int(m.group(2))) if m.group(1) else (int(m.group(3)), int(m.group(4)))
    if hh > 23 or mm > 59:
        raise ValueProblem("no_such_time", text, f"{text!r} is not a time of day (00:00-23:59)")
    return _dt.time(hh, mm)


def parse_datetime(value: Any) -> _dt.datetime:
    """A wall-clock date-time (naive: the kit's time zone is applied by the caller)."""
    if isinstance(value, _dt.datetime):
        return value
    text = _text(value, "date and time")
    m = _DATETIME.fullmatch(text)
    if not m:
        raise ValueProblem("not_a_datetime", text, f"{text!r} is not a date and time")
    day, time = parse_date(m.group(1)), parse_time(m.group(2))
    seconds = int(m.group(3) or 0)
    if seconds > 59:
        raise ValueProblem("no_such_time", text, f"{text!r} is not a time of day (00:00-23:59)")
    return _dt.datetime.combine(day, time.replace(second=seconds))


def combine(day: Any, time: Any) -> _dt.datetime:
    """The date printed or written on a sheet plus a time written in a box."""
    return _dt.datetime.combine(parse_date(day), parse_time(time))


def parse_number(value: Any) -> int | float:
    """An int when no decimal separator was written, else a float."""
    if isinstance(value, bool):
        raise ValueProblem("not_a_number", str(value), f"{value!r} is not a number")
    if isinstance(value, (int, float)):
        return value
    text = _text(value, "number")
    if not _NUMBER.fullmatch(text):
        raise ValueProblem("not_a_number", text, f"{text!r} is not a number")
    if "." in text or "," in text:
        return float(text.replace(",", "."))
    return int(text)


def check_range(number: int | float, low: float | None, high: float | None, text: str = "") -> None:
    """Plausibility: outside [low, high] is a problem a person must confirm."""
    if (low is not None and number < low) or (high is not None and number > high):
        raise ValueProblem("out_of_range", text or str(number),
                           f"{text or number} is outside the plausible range {low}-{high}", low=low, high=high)


def check_date_window(day: _dt.date, earliest: _dt.date | None = None, latest: _dt.date | None = None,
                      text: str = "") -> None:
    """Plausibility of a care date (the kit's printing-scanning window) or a birth date (latest = today)."""
    if (earliest and day < earliest) or (latest and day > latest):
        raise ValueProblem("date_out_of_window", text or day.isoformat(),
                           f"{text or day.isoformat()} is outside {earliest or '…'} – {latest or '…'}",
                           earliest=earliest.isoformat() if earliest else None,
                           latest=latest.isoformat() if latest else None)


def _or_none(parse, value: Any):
    try:
        return parse(value)
    except ValueProblem:
        return None


def date_or_none(value: Any) -> _dt.date | None:
    return _or_none(parse_date, value)


def time_or_none(value: Any) -> _dt.time | None:
    return _or_none(parse_time, value)


def datetime_or_none(value: Any) -> _dt.datetime | None:
    return _or_none(parse_datetime, value)


def number_or_none(value: Any) -> int | float | None:
    return _or_none(parse_number, value)


# Printing: the order the forms' comb boxes use (dd/mm/yyyy, 24-hour clock), never ISO.
def printed_date(value: Any) -> str:
    """A date as a nurse reads it on the forms: dd/mm/yyyy. Unparseable text is printed as given."""
    day = date_or_none(value)
    return day.strftime("%d/%m/%Y") if day else str(value or "")


def printed_datetime(value: Any) -> str:
    """A timestamp as dd/mm/yyyy hh:mm in its own (local) time: an ISO time with an offset is the
    hospital's wall clock at that offset; a UTC one is shown in this computer's local time."""
    text = str(value or "")
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is not None and moment.utcoffset() == _dt.timedelta(0):
        moment = moment.astimezone()
    return moment.strftime("%d/%m/%Y %H:%M")


# Instants: a wall-clock time from the paper in the kit's zone. A time a DST change skips or
# repeats is never placed by guess: a person must say which instant was meant.
def to_instant(naive: _dt.datetime, zone: Any) -> _dt.datetime:
    """The instant a wall-clock time names in ``zone`` (a ZoneInfo or an IANA name).

    Raises ValueProblem ``nonexistent_time`` (in the gap when clocks go forward) or
    ``ambiguous_time`` (in the hour that repeats when clocks go back)."""
    from zoneinfo import ZoneInfo
    tz = zone if isinstance(zone, _dt.tzinfo) else ZoneInfo(str(zone))
    if naive.tzinfo is not None:
        return naive
    first, second = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    text = naive.isoformat(sep=" ", timespec="minutes")
    if first.utcoffset() != second.utcoffset():
        back = first.astimezone(_dt.timezone.utc).astimezone(tz).replace(tzinfo=None)
        if back != naive:
            raise ValueProblem("nonexistent_time", text,
                               f"{text} does not exist in {tz}: the clocks went forward over it (DST change);"
                               " a person must say which time was meant", zone=str(tz))
        raise ValueProblem("ambiguous_time", text,
                           f"{text} happened twice in {tz}: the clocks went back (DST change);"
                           " a person must say which of the two was meant", zone=str(tz))
    return first


# The Belgian national number (INSZ/NISS): 9 digits (birth date yymmdd + serial), then 2 check digits.
_NISS = re.compile(r"\d{11}")


def check_national_number(value: Any) -> str:
    """The 11 digits of a Belgian INSZ/NISS whose check digits are right; separators (. - space) allowed.

    Check = 97 - (first 9 digits mod 97); for people born from 2000 on the same with 2 prefixed
    (2000000000 + the 9 digits). Either one matching is accepted: the yy of the number does not
    say the century."""
    text = str(value or "").strip()
    digits = re.sub(r"[\s.\-]", "", text)
    if not _NISS.fullmatch(digits):
        raise ValueProblem("bad_national_number", text, f"{text!r} is not a national number (11 digits)")
    base, check = int(digits[:9]), int(digits[9:])
    if check not in (97 - base % 97, 97 - (2_000_000_000 + base) % 97):
        raise ValueProblem("bad_national_number", text,
                           f"{text!r} is not a valid national number: the check digits do not match")
    return digits


def national_number_or_none(value: Any) -> str | None:
    return _or_none(check_national_number, value)


# A dose as the census writes it ("1 g", "40 mg", "18 IU", "2,5 mg"): amount and UCUM unit.
_DOSE = re.compile(r"\s*(\d+(?:[.,]\d+)?)\s*([A-Za-zµ]+)\s*")
DOSE_UNITS = {"mg": "mg", "g": "g", "mcg": "ug", "µg": "ug", "ug": "ug", "ml": "mL", "l": "L",
              "iu": "[iU]", "ui": "[iU]", "ie": "[iU]", "u": "[U]", "units": "[U]", "mmol": "mmol"}


def dose_quantity(text: Any) -> dict[str, Any] | None:
    """{value, unit, code} of a simple dose, or None when the text is anything else ("1-2 tabs",
    "as per protocol"): such a dose is sent as text only, never guessed."""
    m = _DOSE.fullmatch(str(text or ""))
    if not m or m.group(2).lower() not in DOSE_UNITS:
        return None
    number = float(m.group(1).replace(",", "."))
    return {"value": int(number) if number.is_integer() else number, "unit": m.group(2),
            "code": DOSE_UNITS[m.group(2).lower()]}


# --- mark fields: the printed options are the only values -----------------------------------------
def field_options(field: dict[str, Any] | None, type_: str) -> list[Any] | None:
    """The values a mark field can take, in print order (what digits 1..n pick on the review
    screen); None for fields whose value is written or typed."""
    if type_ == "checkbox":
        return [True, False]
    if type_ in ("choice", "multichoice"):
        opts = [o["value"] for o in (field or {}).get("options", [])]
        return opts + [None] if type_ == "choice" else opts
    return None


def is_option_value(options: list[Any], type_: str, value: Any) -> bool:
    """True when value is one a mark field can hold: one of its options (a list of them for a
    multichoice). A mark is corrected by picking what was printed, never by free text."""
    if type_ == "multichoice":
        return isinstance(value, list) and all(v in options for v in value)
    return value in options
