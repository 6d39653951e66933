"""One parser for handwritten dates, times and numbers: every accepted and refused form, and the
worklist, the identity screen and the FHIR export agree on each of them (issue 9, item 5)."""
import datetime as dt
import importlib

import pytest

from fallbackkit.export import fhir
from fallbackkit.reconcile import identity
from fallbackkit.templates import values

worklist_module = importlib.import_module("fallbackkit.reconcile.worklist")  # the package exports a function of that name

DATES = [
    ("2026-11-28", dt.date(2026, 11, 28)),
    ("28/11/2026", dt.date(2026, 11, 28)),
    ("8/3/2026", dt.date(2026, 3, 8)),
    ("28-11-2026", dt.date(2026, 11, 28)),
    ("28.11.2026", dt.date(2026, 11, 28)),
    ("28 11 2026", dt.date(2026, 11, 28)),
    (" 28 / 11 / 2026 ", dt.date(2026, 11, 28)),
    ("28112026", dt.date(2026, 11, 28)),
    ("29/02/2024", dt.date(2024, 2, 29)),
    ("28/11/26", "two_digit_year"),
    ("28-11-26", "two_digit_year"),
    ("31/02/2026", "no_such_date"),
    ("29/02/2026", "no_such_date"),
    ("2026-13-01", "no_such_date"),
    ("28/11-2026", "not_a_date"),     # mixed separators
    ("11/2026", "not_a_date"),
    ("Dupont", "not_a_date"),
    ("2811202", "not_a_date"),
    ("01/01/1850", "date_too_early"),
    ("", "blank"),
    (None, "blank"),
]

TIMES = [
    ("08:30", dt.time(8, 30)),
    ("8:30", dt.time(8, 30)),
    ("08h30", dt.time(8, 30)),
    ("08H30", dt.time(8, 30)),
    ("08.30", dt.time(8, 30)),
    ("08 30", dt.time(8, 30)),
    ("0830", dt.time(8, 30)),
    ("23:59", dt.time(23, 59)),
    ("00:00", dt.time(0, 0)),
    ("24:00", "no_such_time"),
    ("25:70", "no_such_time"),
    ("12:60", "no_such_time"),
    ("830", "not_a_time"),
    ("8:3", "not_a_time"),
    ("noon", "not_a_time"),
    ("", "blank"),
]

DATETIMES = [
    ("28/11/2026 08:30", dt.datetime(2026, 11, 28, 8, 30)),
    ("2026-11-28T08:30", dt.datetime(2026, 11, 28, 8, 30)),
    ("2026-11-28T08:30:15", dt.datetime(2026, 11, 28, 8, 30, 15)),
    ("28112026 0830", dt.datetime(2026, 11, 28, 8, 30)),
    ("28 11 2026 08:30", dt.datetime(2026, 11, 28, 8, 30)),
    ("28/11/2026 24:00", "no_such_time"),
    ("28/11/26 08:30", "two_digit_year"),
    ("2026-11-28T08:30+01:00", "not_a_datetime"),
    ("28/11/2026", "not_a_datetime"),
]

NUMBERS = [
    ("37.2", 37.2), ("37,2", 37.2), ("120", 120), ("-3", -3), (" 98 ", 98), (7, 7), (36.6, 36.6),
    ("37.2.1", "not_a_number"), ("1e3", "not_a_number"), ("abc", "not_a_number"), (True, "not_a_number"),
    ("", "blank"),
]


def _outcome(parse, text):
    try:
        return parse(text)
    except values.ValueProblem as exc:
        assert str(exc), "every problem has a message"
        return exc.code


@pytest.mark.parametrize("text,expected", DATES)
def test_dates(text, expected):
    assert _outcome(values.parse_date, text) == expected


@pytest.mark.parametrize("text,expected", TIMES)
def test_times(text, expected):
    assert _outcome(values.parse_time, text) == expected


@pytest.mark.parametrize("text,expected", DATETIMES)
def test_datetimes(text, expected):
    assert _outcome(values.parse_datetime, text) == expected


@pytest.mark.parametrize("text,expected", NUMBERS)
def test_numbers(text, expected):
    got = _outcome(values.parse_number, text)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("text,expected", DATES)
def test_identity_screen_reads_birth_dates_by_the_same_rule(text, expected):
    got = identity.parse_date(text)
    assert got == (expected.isoformat() if isinstance(expected, dt.date) else None)


@pytest.mark.parametrize("text,expected", DATES)
def test_worklist_and_fhir_agree_on_the_care_time(text, expected):
    """The worklist's care time and the FHIR time are the same moment, or both refuse."""
    on_worklist = worklist_module._combine(text, "08:30")
    try:
        in_fhir = fhir.care_time(text, "08:30", "Europe/Brussels")
    except fhir.Unsettled:
        in_fhir = None
    if isinstance(expected, dt.date):
        assert on_worklist == f"{expected.isoformat()}T08:30"
        assert in_fhir.startswith(f"{expected.isoformat()}T08:30:00")
    else:
        assert on_worklist is None and in_fhir is None


@pytest.mark.parametrize("text,expected", TIMES)
def test_worklist_and_fhir_agree_on_times(text, expected):
    on_worklist = worklist_module._combine("28/11/2026", text)
    try:
        in_fhir = fhir.care_time("28/11/2026", text, "Europe/Brussels")
    except fhir.Unsettled:
        in_fhir = None
    if isinstance(expected, dt.time):
        assert on_worklist == f"2026-11-28T{expected:%H:%M}"
        assert in_fhir.startswith(f"2026-11-28T{expected:%H:%M}:00")
    else:
        assert on_worklist is None and in_fhir is None


def test_plausibility_checks():
    values.check_range(37.2, 30.0, 45.0)
    with pytest.raises(values.ValueProblem) as exc:
        values.check_range(96, 30.0, 45.0)
    assert exc.value.code == "out_of_range" and exc.value.params == {"low": 30.0, "high": 45.0}
    values.check_date_window(dt.date(2026, 11, 28), dt.date(2026, 11, 20), dt.date(2026, 12, 1))
    with pytest.raises(values.ValueProblem) as exc:
        values.check_date_window(dt.date(2027, 1, 1), latest=dt.date(2026, 12, 1))
    assert exc.value.code == "date_out_of_window"
