"""The hot paths' JSON: orjson, and the standard library for what orjson refuses."""

from __future__ import annotations

import json
import math

import pytest

from controller.jsonio import dumps, dumps_text, loads


def test_compact_utf8_that_reads_back_the_same() -> None:
    value = {"name": "Zoë", "at": 1700000000.25, "legs": [1, None, True], "n": {"1": "x"}}
    assert dumps(value) == '{"name":"Zoë","at":1700000000.25,"legs":[1,null,true],"n":{"1":"x"}}'.encode()
    assert loads(dumps(value)) == value == loads(dumps_text(value))


def test_values_orjson_refuses_go_through_the_standard_library() -> None:
    big = {"id": 2**70, "text": "\ud800"}  # beyond 64 bits; a lone surrogate
    assert json.loads(dumps(big)) == big
    [nan] = loads("[NaN]")  # as an older row may hold it
    assert math.isnan(nan)


def test_a_value_json_cannot_hold_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        dumps({"when": object()})
