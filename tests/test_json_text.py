"""reports/json_text.py writes what json.dumps(indent=2) writes, byte for byte."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.reports.json_text import dumps

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(_VALUES)
def test_the_same_text_as_json_dumps(value: Any) -> None:
    assert dumps(value) == json.dumps(value, indent=2)


@pytest.mark.parametrize(
    "value",
    [
        ("a", (1, [])),
        OrderedDict(b={}, a=[True]),
        {"nan": float("nan"), "inf": [float("-inf"), 1e16, -0.0]},
        {"\u202e\x1b\n": 'caf\u00e9 \U0001f600 "q" \\'},
    ],
)
def test_tuples_subclasses_floats_and_escapes(value: Any) -> None:
    assert dumps(value) == json.dumps(value, indent=2)


def test_a_key_json_would_convert_is_refused() -> None:
    with pytest.raises(TypeError):
        dumps({1: "one"})
