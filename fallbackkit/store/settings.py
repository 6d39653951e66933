"""Kit settings: what every stage of one kit must agree on, kept in kit_meta (not only as flags).

- ``tz``: the IANA time zone of the times written on paper, chosen at ``init`` (default: this
  computer's zone). Every stage that turns a wall-clock time from the paper into an instant uses it.
- ``mrn_system``, ``encounter_system``, ``accession_system``, ``national_number_system``: the FHIR
  identifier systems of the numbers the hospital already gives. Unset, the export uses kit-private
  URNs, and a receiving server creates new patients and encounters instead of matching its own.
- ``language``: the language (en, fr, nl) the command line and the report say why a page was put aside in
  (`scan`, `quarantine list`); each clerk's station has its own (users.lang).
- ``tls_cert``, ``tls_key``: the certificate and key IT gives the review station when other PCs
  reach it (else the kit makes a self-signed one).

Changes go through :func:`set_setting`, which writes an audit row with the value before and after.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from ..errors import BadInput
from .audit import append_audit

SSIN_SYSTEM = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"


def check_zone(name: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    name = (name or "").strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(f"unknown time zone {name!r}", hint="use an IANA name such as Europe/Brussels") from None
    return name


def _check_system(value: str) -> str:
    value = (value or "").strip()
    parsed = urlparse(value)
    if not (parsed.scheme in ("http", "https") and parsed.netloc) and not (
            parsed.scheme in ("urn",) and ":" in parsed.path):
        raise BadInput(f"{value!r} is not an identifier system URI",
                       hint="for example https://hospital.example/fhir/sid/mrn or urn:oid:1.2.3")
    return value


def system_zone() -> str:
    """This computer's IANA zone name: $TZ, else /etc/localtime's target, else UTC."""
    from zoneinfo import ZoneInfo
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    for name in candidates:
        if name:
            try:
                ZoneInfo(name)
                return name
            except Exception:  # noqa: BLE001 - a name this machine cannot resolve is no answer
                continue
    return "UTC"


LANGUAGES = ("en", "fr", "nl")


def _check_language(value: str) -> str:
    value = (value or "").strip().lower()
    if value not in LANGUAGES:
        raise BadInput(f"unknown language {value!r}", hint="one of " + ", ".join(LANGUAGES))
    return value


def _check_file(value: str) -> str:
    path = Path(value or "").expanduser()
    if not path.is_absolute() or not path.is_file():
        raise BadInput(f"{value!r} is not the absolute path of an existing file",
                       hint="for example /etc/fallbackkit/station.crt")
    return str(path)


@dataclass(frozen=True)
class Setting:
    key: str             # in kit_meta
    help: str
    check: Callable[[str], str]
    default: Callable[[], str | None]


SETTINGS: dict[str, Setting] = {
    "tz": Setting("time_zone", "time zone of the times written on paper (IANA name)", check_zone, system_zone),
    "mrn_system": Setting("fhir_mrn_system", "FHIR identifier system of the hospital's MRNs", _check_system,
                          lambda: None),
    "encounter_system": Setting("fhir_encounter_system", "FHIR identifier system of the hospital's encounter"
                                " (admission) numbers", _check_system, lambda: None),
    "accession_system": Setting("fhir_accession_system", "FHIR identifier system of the laboratory's accession"
                                " numbers", _check_system, lambda: None),
    "national_number_system": Setting("fhir_national_number_system", "FHIR identifier system of the national"
                                      " number (Belgian INSZ/NISS)", _check_system, lambda: SSIN_SYSTEM),
    "language": Setting("language", "language of the reasons and details the command line prints (en, fr, nl)",
                        _check_language, lambda: "en"),
    "tls_cert": Setting("tls_cert", "review station: IT's TLS certificate (PEM file), instead of the kit's"
                        " self-signed one", _check_file, lambda: None),
    "tls_key": Setting("tls_key", "review station: the private key of tls_cert (PEM file)", _check_file,
                       lambda: None),
}


def _conn(kit_or_conn: Any):
    return getattr(getattr(kit_or_conn, "db", None), "conn", None) or kit_or_conn


def stored_setting(kit: Any, name: str) -> str | None:
    """The value set in this kit, or None (no default)."""
    row = _conn(kit).execute("SELECT value FROM kit_meta WHERE key = ?", [SETTINGS[name].key]).fetchone()
    return row[0] if row else None


def get_setting(kit: Any, name: str) -> str | None:
    """The value set in this kit, else the default (tz: this computer's zone; the systems: none,
    except the national number's)."""
    value = stored_setting(kit, name)
    return value if value is not None else SETTINGS[name].default()


def kit_settings(kit: Any) -> list[dict[str, Any]]:
    return [{"name": name, "value": get_setting(kit, name), "set": stored_setting(kit, name) is not None,
             "help": s.help} for name, s in SETTINGS.items()]


def set_setting(kit: Any, name: str, value: str, actor: str) -> str:
    """Check and store a setting; audited (action 'kit.setting', before and after)."""
    if name not in SETTINGS:
        raise BadInput(f"unknown setting {name!r}", hint="one of " + ", ".join(SETTINGS))
    setting = SETTINGS[name]
    value = setting.check(value)
    conn = _conn(kit)

    with conn:
        before = stored_setting(conn, name)
        conn.execute("INSERT INTO kit_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET"
                     " value = excluded.value", [setting.key, value])
        append_audit(conn, actor, "kit.setting", name, {"value": before}, {"value": value})
    return value
