"""The QR payload of a printed sheet: opaque, signed, no patient data.

Format (QR alphanumeric charset only, so the code stays small and robust):

    FK1:<kit id>:<TEMPLATE>:<version>:<sheet id>:<page>:<pages>:<mac>

`mac` is HMAC-SHA256 over everything before it, keyed with the kit secret, truncated to 60 bits
and written as 12 Crockford characters. Decoders find phantom codes in noise, and anyone can print
a QR: only a payload whose prefix parses and whose MAC verifies identifies a sheet.

A ward pack's cover sheet carries a code of another kind, signed the same way, so that a cover
scanned with its pack is recognised (and counted), not quarantined as a page without a code:

    FK1C:<kit id>:<first sheet id of the pack>:<sheets in the pack>:<mac>

Its prefix differs from a sheet's (`parse` refuses it), so no reader can mistake one for the other.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from . import ids
from .errors import PayloadError

PREFIX = "FK1"
MAC_CHARS = 12
_TEMPLATE_RE = re.compile(r"^[A-Z0-9-]{1,20}$")


@dataclass(frozen=True)
class SheetPayload:
    kit_id: str
    template: str  # lower-case template name
    version: int
    sheet_id: str
    page: int
    pages: int

    def _body(self) -> str:
        return ":".join(
            [PREFIX, self.kit_id, self.template.upper(), str(self.version), self.sheet_id,
             str(self.page), str(self.pages)]
        )

    def encode(self, secret: bytes) -> str:
        body = self._body()
        return f"{body}:{_mac(secret, body)}"


def _mac(secret: bytes, body: str) -> str:
    digest = hmac.new(secret, body.encode("ascii"), hashlib.sha256).digest()
    number = int.from_bytes(digest[:8], "big") >> (64 - 5 * MAC_CHARS)
    return ids.encode(number, MAC_CHARS)


def parse(text: str) -> SheetPayload:
    """Parse without verifying; raises PayloadError when it is not one of ours."""
    parts = text.strip().split(":")
    if len(parts) != 8 or parts[0] != PREFIX:
        raise PayloadError("not a fallbackkit sheet code")
    _, kit_id, template, version, sheet_id, page, pages, mac = parts
    if not (_TEMPLATE_RE.match(template) and version.isdigit() and page.isdigit()
            and pages.isdigit() and ids.is_valid(sheet_id, 8) and ids.is_valid(kit_id, 5)
            and len(mac) == MAC_CHARS):
        raise PayloadError("malformed fallbackkit sheet code")
    if not 1 <= int(page) <= int(pages):
        raise PayloadError("malformed fallbackkit sheet code (page out of range)")
    return SheetPayload(kit_id, template.lower(), int(version), sheet_id, int(page), int(pages))


def verify(text: str, secret: bytes, kit_id: str) -> SheetPayload:
    """Parse and check kit id and MAC. Raises PayloadError saying which check failed."""
    payload = parse(text)
    mac = text.strip().rsplit(":", 1)[1]
    if payload.kit_id != kit_id:
        raise PayloadError(f"sheet belongs to another kit ({payload.kit_id}, this kit is {kit_id})")
    if not hmac.compare_digest(mac, _mac(secret, payload._body())):
        raise PayloadError("sheet code signature does not verify (forged or damaged code)")
    return payload


COVER_PREFIX = "FK1C"


@dataclass(frozen=True)
class CoverPayload:
    """The code of a ward pack's cover: which pack (by its first sheet, a key every station shares)."""
    kit_id: str
    first_sheet_id: str
    sheets: int

    def _body(self) -> str:
        return ":".join([COVER_PREFIX, self.kit_id, self.first_sheet_id, str(self.sheets)])

    def encode(self, secret: bytes) -> str:
        body = self._body()
        return f"{body}:{_mac(secret, body)}"


def is_cover(text: str) -> bool:
    try:
        parse_cover(text)
        return True
    except PayloadError:
        return False


def parse_cover(text: str) -> CoverPayload:
    """Parse a cover code without verifying; raises PayloadError when it is not one."""
    parts = text.strip().split(":")
    if len(parts) != 5 or parts[0] != COVER_PREFIX:
        raise PayloadError("not a fallbackkit cover code")
    _, kit_id, first, sheets, mac = parts
    if not (ids.is_valid(kit_id, 5) and ids.is_valid(first, 8) and sheets.isdigit() and len(mac) == MAC_CHARS):
        raise PayloadError("malformed fallbackkit cover code")
    return CoverPayload(kit_id, first, int(sheets))


def verify_cover(text: str, secret: bytes, kit_id: str) -> CoverPayload:
    """Parse and check kit id and MAC of a cover code, as `verify` does for a sheet."""
    cover = parse_cover(text)
    mac = text.strip().rsplit(":", 1)[1]
    if cover.kit_id != kit_id:
        raise PayloadError(f"cover sheet of another kit ({cover.kit_id}, this kit is {kit_id})")
    if not hmac.compare_digest(mac, _mac(secret, cover._body())):
        raise PayloadError("cover code signature does not verify (forged or damaged code)")
    return cover
