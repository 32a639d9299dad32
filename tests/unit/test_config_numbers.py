"""[numbers."+27…"] and [inbound] in the config: read, normalised, and each
mistake named with its setting, value and file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.config import load_config
from controller.errors import ConfigError
from tests.unit.test_example_config import EXAMPLE


def load(folder: Path, text: str) -> ConfigError | dict[str, object]:
    path = folder / "callconnect.toml"
    path.write_text(text, encoding="utf-8")
    try:
        numbers = load_config(path, environ={}).inbound_numbers()
    except ConfigError as exc:
        return exc
    return {number: entry.as_dict() for number, entry in numbers.items()}


def refused(folder: Path, text: str) -> ConfigError:
    outcome = load(folder, text)
    assert isinstance(outcome, ConfigError), outcome
    return outcome


def test_a_number_is_read_normalised_with_its_defaults(tmp_path: Path) -> None:
    numbers = load(tmp_path, '[numbers."011 555 0900"]\n'
                             'actions = [{ type = "connect", to = "group:sales" }]\n')
    assert numbers == {"+27115550900": {
        "number": "+27115550900", "incoming_url": "",
        "actions": [{"type": "connect", "to": "group:sales"}], "fallback_actions": [],
        "incoming_timeout": 5.0, "idle_timeout": 30, "webhook_url": "",
        "webhook_events": ["completed"], "metadata": {}, "source": "config"}}


def test_the_examples_commented_numbers_load(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").split("# [numbers.", 1)[1]
    uncommented = "[numbers." + re.sub(r"^# ", "", text, flags=re.MULTILINE)
    numbers = load(tmp_path, "[outbound]\nallowed_hosts = [\"crm.example.com\"]\n" + uncommented)
    assert isinstance(numbers, dict) and sorted(numbers) == ["+27115550900", "+27115550901"]


@pytest.mark.parametrize(("table", "setting", "words"), [
    ('[numbers."+27115550900"]\nincoming_timeout = 0\nactions = [{ type = "hangup" }]\n',
     'numbers.+27115550900.incoming_timeout', "must be more than 0"),
    ('[numbers."+27115550900"]\nincoming_timeout = 31.0\nactions = [{ type = "hangup" }]\n',
     'numbers.+27115550900.incoming_timeout', "at most 30"),
    ('[numbers."+27115550900"]\nidle_timeout = 5.5\nactions = [{ type = "hangup" }]\n',
     'numbers.+27115550900.idle_timeout', "whole number"),
    ('[numbers."+27115550900"]\nactoins = []\n',
     'numbers.+27115550900.actoins', "unknown setting"),
    ('[numbers."+27115550900"]\n',
     'numbers.+27115550900.actions', "needs incoming_url"),
    ('[numbers."+27115550900"]\nactions = [{ type = "dance" }]\n',
     'numbers.+27115550900.actions[0].type', "'dance'"),
    ('[numbers."+27115550900"]\nactions = [{ type = "hangup" }]\n'
     'fallback_actions = [{ type = "hangup" }]\n',
     'numbers.+27115550900.fallback_actions', "only when incoming_url fails"),
    ('[numbers."+27115550900"]\nincoming_url = "http://127.0.0.1:9/in"\n',
     'numbers.+27115550900.incoming_url', "127.0.0.1"),
    ('[numbers."0900"]\nactions = [{ type = "hangup" }]\n',
     'numbers.0900', "0900"),
    ('[numbers."+27115550900"]\nactions = [{ type = "hangup" }]\n'
     '[numbers."011 555 0900"]\nactions = [{ type = "hangup" }]\n',
     'numbers.011 555 0900', "+27115550900 again"),
    ('[inbound]\nunknown_number = "busy"\n', "inbound.unknown_number", "'message' or 'reject'"),
    ('[inbound]\nunknown_number_cause = 128\n', "inbound.unknown_number_cause", "at most 127"),
    ('[inbound]\nunknown_number_message = "Gone ${EXTEN}"\n',
     "inbound.unknown_number_message", "${"),
])
def test_a_bad_number_or_inbound_setting_is_named_with_its_file(
        tmp_path: Path, table: str, setting: str, words: str) -> None:
    error = refused(tmp_path, table)
    assert error.details["setting"] == setting
    assert words in error.message
    assert str(tmp_path / "callconnect.toml") in error.message


def test_numbers_cannot_come_from_the_environment() -> None:
    with pytest.raises(ConfigError, match="set it in the config file"):
        load_config(None, environ={"CALLCONNECT_NUMBERS": "+27115550900"})


def test_inbound_defaults_say_a_message_then_hang_up_unallocated() -> None:
    inbound = load_config(None, environ={}).inbound
    assert (inbound.unknown_number, inbound.unknown_number_cause) == ("message", 1)
    assert inbound.unknown_number_message
