"""Sheet ids and QR payloads: check characters catch typing errors, signatures catch forgeries."""
import random

import pytest

from fallbackkit import ids, payload
from fallbackkit.errors import PayloadError

SECRET = bytes(range(32))


def test_sheet_ids_are_valid_and_distinct():
    made = {ids.new_sheet_id() for _ in range(2000)}
    assert len(made) == 2000
    assert all(len(s) == 9 and ids.is_valid(s, 8) for s in made)


def test_check_character_catches_every_single_substitution_and_adjacent_swap():
    rng = random.Random(3)
    for _ in range(200):
        sid = ids.new_sheet_id()
        for pos in range(9):
            for ch in ids.ALPHABET:
                if ch != sid[pos]:
                    assert not ids.is_valid(sid[:pos] + ch + sid[pos + 1:], 8)
        pos = rng.randrange(8)
        swapped = sid[:pos] + sid[pos + 1] + sid[pos] + sid[pos + 2:]
        if swapped != sid:
            # Luhn mod N misses only the swap of 0 and the maximal digit; count is tiny either way
            assert not ids.is_valid(swapped, 8) or {sid[pos], sid[pos + 1]} == {"0", "Z"}


def test_normalize_accepts_what_a_clerk_types():
    sid = ids.new_sheet_id()
    typed = ids.pretty_sheet_id(sid).lower().replace("0", "o").replace("1", "l")
    assert ids.normalize(typed) == sid


def test_payload_round_trip_and_verification():
    p = payload.SheetPayload(ids.new_kit_id(), "lab-request", 3, ids.new_sheet_id(), 1, 2)
    text = p.encode(SECRET)
    assert text.startswith("FK1:")
    assert payload.verify(text, SECRET, p.kit_id) == p
    assert len(text) <= 64  # fits a version-4 QR at error correction level Q (alphanumeric)


@pytest.mark.parametrize("tamper", ["page", "sheet", "template", "mac"])
def test_tampered_payload_fails(tamper):
    p = payload.SheetPayload(ids.new_kit_id(), "mar", 1, ids.new_sheet_id(), 1, 2)
    parts = p.encode(SECRET).split(":")
    if tamper == "page":
        parts[5] = "2"
    elif tamper == "sheet":
        other = ids.new_sheet_id()
        parts[4] = other
    elif tamper == "template":
        parts[2] = "VITALS"
    else:
        parts[7] = ("0" if parts[7][0] != "0" else "1") + parts[7][1:]
    with pytest.raises(PayloadError, match="signature"):
        payload.verify(":".join(parts), SECRET, p.kit_id)


def test_foreign_kit_and_junk_are_refused():
    p = payload.SheetPayload(ids.new_kit_id(), "mar", 1, ids.new_sheet_id(), 1, 1)
    with pytest.raises(PayloadError, match="another kit"):
        payload.verify(p.encode(SECRET), SECRET, ids.new_kit_id())
    for junk in ["739", "", "FK1:", "http://example.org", "FK2:" + p.encode(SECRET)[4:]]:
        with pytest.raises(PayloadError):
            payload.verify(junk, SECRET, p.kit_id)
    with pytest.raises(PayloadError, match="signature"):
        payload.verify(p.encode(b"another secret"), SECRET, p.kit_id)
