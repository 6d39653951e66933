"""JSON text exactly as `json.dumps(value, indent=N, ensure_ascii=False)` writes it, faster.

With `indent`, the standard library always uses its pure-Python encoder (a generator per nested
value): at 100,000 captures that was half of `worklist --json` and most of an export's time spent
writing. `dumps` walks the value once, appending to a list, with the C string encoder for every
string; the text is the same byte for byte (tests/test_jsontext.py compares it with json.dumps on
generated values). Without an indent the standard library's C encoder is already fast: use it.
"""
from __future__ import annotations

import json
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any, Callable

_INF = float("inf")


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == _INF:
        return "Infinity"
    if value == -_INF:
        return "-Infinity"
    return float.__repr__(value)


def dumps(value: Any, indent: int = 1, ensure_ascii: bool = False,
          default: Callable[[Any], Any] | None = None, level: int = 0) -> str:
    """`json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, default=default)`; with level,
    as it reads LEVEL deep inside an indented document (each line after the first indented by
    level * indent more: what `.replace("\\n", "\\n" + pad)` made of it)."""
    out: list[str] = []
    _write(value, out, "\n" + " " * (indent * level), " " * indent, encode_basestring_ascii if ensure_ascii else encode_basestring,
           default)
    return "".join(out)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, float):
        return _float(key)
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return int.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {key.__class__.__name__}")


def _write(value: Any, out: list[str], newline: str, step: str, string: Callable[[str], str],
           default: Callable[[Any], Any] | None) -> None:
    kind = type(value)
    if kind is str:
        out.append(string(value))
    elif kind is dict:
        if not value:
            out.append("{}")
            return
        inner = newline + step
        sep = "{" + inner
        for key, item in value.items():
            out.append(sep)
            sep = "," + inner
            out.append(string(key if type(key) is str else _key(key)))
            out.append(": ")
            kind = type(item)
            if kind is str:
                out.append(string(item))
            elif item is None:
                out.append("null")
            elif kind is int:
                out.append(int.__repr__(item))
            else:
                _write(item, out, inner, step, string, default)
        out.append(newline + "}")
    elif kind is list or kind is tuple:
        if not value:
            out.append("[]")
            return
        inner = newline + step
        sep = "[" + inner
        for item in value:
            out.append(sep)
            sep = "," + inner
            kind = type(item)
            if kind is str:
                out.append(string(item))
            else:
                _write(item, out, inner, step, string, default)
        out.append(newline + "]")
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is int:
        out.append(int.__repr__(value))
    elif kind is float:
        out.append(_float(value))
    # subclasses, in the order json's encoder tests them
    elif isinstance(value, str):
        out.append(string(value))
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, (list, tuple)):
        _write(list(value), out, newline, step, string, default)
    elif isinstance(value, dict):
        _write(dict(value), out, newline, step, string, default)
    elif default is not None:
        _write(default(value), out, newline, step, string, default)
    else:
        json.dumps(value)  # raises the TypeError json would
        raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")
