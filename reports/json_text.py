"""The text of the JSON reports: `json.dumps(value, indent=2)`, byte for byte, faster.

With `indent` set, json.dumps takes the pure-Python encoder (the C one only
writes compact text), whose generators take 20 ms on a QEMU 10.0 audit
document; this writer, appending to one list and leaving strings to the C
escaper, takes 7. It knows the values reports are made of: dicts with str
keys, lists and tuples, strings, numbers, booleans and None.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _string
from typing import Any

_LITERALS = {None: "null", True: "true", False: "false"}


def dumps(value: Any) -> str:
    """`json.dumps(value, indent=2)`."""
    out: list[str] = []
    _write(value, "\n", out)
    return "".join(out)


def _write(value: Any, newline: str, out: list[str]) -> None:
    # Exact types first, the common case; subclasses and floats after.
    kind = type(value)
    if kind is str:
        out.append(_string(value))
    elif kind is dict:
        _write_dict(value, newline, out)
    elif kind is list or kind is tuple:
        _write_list(value, newline, out)
    elif kind is int:
        out.append(int.__repr__(value))
    elif value is None or kind is bool:
        out.append(_LITERALS[value])
    elif isinstance(value, dict):
        _write_dict(value, newline, out)
    elif isinstance(value, list | tuple):
        _write_list(value, newline, out)
    else:  # a float, a str or int subclass: json's own spelling (NaN, 1e+16)
        out.append(json.dumps(value))


def _write_dict(value: dict[str, Any], newline: str, out: list[str]) -> None:
    if not value:
        out.append("{}")
        return
    inner = newline + "  "
    separator, after = "{" + inner, "," + inner
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"keys must be str, not {type(key).__name__}")
        if type(item) is str:  # most values: one append, no call
            out.append(f"{separator}{_string(key)}: {_string(item)}")
        else:
            out.append(f"{separator}{_string(key)}: ")
            _write(item, inner, out)
        separator = after
    out.append(newline + "}")


def _write_list(value: list[Any] | tuple[Any, ...], newline: str, out: list[str]) -> None:
    if not value:
        out.append("[]")
        return
    inner = newline + "  "
    separator, after = "[" + inner, "," + inner
    for item in value:
        out.append(separator)
        _write(item, inner, out)
        separator = after
    out.append(newline + "]")
