"""fallbackkit.jsontext.dumps writes the bytes json.dumps(indent=N) writes (the exports and the
CLI's --json use it for speed: the standard library's indenting encoder is pure Python)."""
from __future__ import annotations

import datetime as _dt
import enum
import json
import math
import random

import pytest

from fallbackkit import jsontext

STRINGS = ["", "a", "é€😀", "\x00\n\t\"\\", "\u2028x", "line\r\nbreak", "00123", "'quoted'"]


def _value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return rng.choice([None, True, False, 0, -7, 2 ** 70, rng.randint(-10 ** 6, 10 ** 6), 1.5, -0.0, 1e300,
                           math.inf, -math.inf, math.nan, rng.random(), rng.choice(STRINGS),
                           "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(0, 6)))])
    if roll < 0.7:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.75:
        return tuple(_value(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    keys = [rng.choice(STRINGS), rng.randint(-5, 5), 2.5, True, False, None, "k"]
    return {rng.choice(keys): _value(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def test_the_same_text_as_json_dumps():
    rng = random.Random(16)
    for n in range(3000):
        value = _value(rng)
        indent, ascii_only = (1, 2, 4)[n % 3], n % 5 == 0
        assert jsontext.dumps(value, indent=indent, ensure_ascii=ascii_only) == json.dumps(
            value, indent=indent, ensure_ascii=ascii_only), value
        assert jsontext.dumps(value, indent=indent, level=n % 3) == json.dumps(
            value, indent=indent, ensure_ascii=False).replace("\n", "\n" + " " * (indent * (n % 3)))


class Level(enum.IntEnum):
    HIGH = 3


class Named(str):
    pass


def test_subclasses_and_default_as_json_has_them():
    value = {"when": _dt.date(2026, 12, 1), "level": Level.HIGH, "name": Named("x"), "nan": math.nan,
             "nested": [{}, [], (1, 2.5), {"a": None}], 3: True, None: False, 1.5: "f"}
    assert jsontext.dumps(value, indent=1, default=str) == json.dumps(value, indent=1, default=str)
    with pytest.raises(TypeError):
        jsontext.dumps({"when": _dt.date(2026, 12, 1)})
