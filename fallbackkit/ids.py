"""Human-readable identifiers: Crockford base32 with a Luhn mod-32 check character.

Crockford's alphabet leaves out I, L, O and U so that ids survive being read aloud and retyped;
the check character (Luhn mod N over the same alphabet, so it stays QR-alphanumeric) catches every
single-character error and most transpositions.
"""
from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
# Crockford decoding is forgiving about look-alike letters.
_VALUE.update({"O": 0, "I": 1, "L": 1})


def encode(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 32)
        chars.append(ALPHABET[digit])
    if number:
        raise ValueError("number does not fit in the requested length")
    return "".join(reversed(chars))


def check_char(body: str) -> str:
    """Luhn mod 32 check character over Crockford digits."""
    factor, total = 2, 0
    for ch in reversed(body):
        addend = factor * _VALUE[ch]
        factor = 1 if factor == 2 else 2
        total += addend // 32 + addend % 32
    return ALPHABET[(32 - total % 32) % 32]


def normalize(text: str) -> str:
    """Upper-case, drop separators and map look-alikes (O->0, I/L->1)."""
    cleaned = "".join(ch for ch in text.upper() if ch not in "- _")
    return "".join(ALPHABET[_VALUE[ch]] if ch in _VALUE else ch for ch in cleaned)


def is_valid(text: str, body_length: int | None = None) -> bool:
    code = normalize(text)
    if len(code) < 2 or any(ch not in ALPHABET for ch in code):
        return False
    if body_length is not None and len(code) != body_length + 1:
        return False
    return check_char(code[:-1]) == code[-1]


def new_sheet_id() -> str:
    """Eight random Crockford digits (40 bits) plus a check character: 9 characters."""
    body = encode(secrets.randbits(40), 8)
    return body + check_char(body)


def new_kit_id() -> str:
    body = encode(secrets.randbits(25), 5)
    return body + check_char(body)


def pretty_sheet_id(sheet_id: str) -> str:
    """ABCD-EFGH-J: easier to read off the page and type."""
    return f"{sheet_id[:4]}-{sheet_id[4:8]}-{sheet_id[8:]}"


def luhn_digit(digits: str) -> str:
    """Classic decimal Luhn check digit for numeric downtime identifiers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)
