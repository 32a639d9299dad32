"""callconnect.example.toml documents every setting with its default.

The rule: every setting is written out (uncommented) with its default value,
secrets included, since their defaults are empty ("" or []) and the comment
beside them says where to set them instead. The one exception is a setting
whose value is a list of tables (``routes``) or a table of tables
(``groups``, ``numbers``): empty by default, it is shown as a commented example instead,
a ``# key = ...`` line in its table or a ``# [key.NAME]`` table.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from controller.config import Config, load_config
from controller.settings import Layers

EXAMPLE = Path(__file__).resolve().parents[2] / "callconnect.example.toml"
# Settings shown as commented examples: their values are tables.
COMMENTED = {("asterisk", "routes"), ("freeswitch", "routes"), ("groups",), ("numbers",)}


def example() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


def written(data: dict[str, Any], where: tuple[str, ...]) -> bool:
    table: Any = data
    for part in where:
        if not isinstance(table, dict) or part not in table:
            return False
        table = table[part]
    return True


def test_every_setting_is_in_the_example() -> None:
    data = example()
    missing = [".".join(where) for where in Layers(Config).settings
               if where not in COMMENTED and not written(data, where)]
    assert missing == []


def test_every_value_in_the_example_is_the_default() -> None:
    defaults = Config().model_dump()
    data = example()
    differing = [f"{'.'.join(where)} = {value!r}, default {defaults[where[0]][where[1]]!r}"
                 if len(where) == 2 else f"{where[0]} = {value!r}"
                 for where, value in _values(data)
                 if (defaults[where[0]][where[1]] if len(where) == 2 else defaults[where[0]]) != value]
    assert differing == []
    # and it loads, to exactly the defaults (no unknown key, no bad value)
    assert load_config(EXAMPLE, environ={}).model_dump() == defaults


def test_the_commented_settings_are_shown_as_examples() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for where in COMMENTED:
        if len(where) == 2:
            section = text.split(f"\n[{where[0]}]", 1)[1].split("\n[", 1)[0]
            assert re.search(rf"^# {where[1]} = ", section, re.MULTILINE), where
        else:
            assert re.search(rf'^# \[{where[0]}\.(\w+|"[^"]+")\]', text, re.MULTILINE), where
        assert not written(example(), where)


def _values(data: dict[str, Any]) -> list[tuple[tuple[str, ...], Any]]:
    found: list[tuple[tuple[str, ...], Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            found += [((key, inner), item) for inner, item in value.items()]
        else:
            found.append(((key,), value))
    return found
