"""Answer steps: what a dial asks of the Leg B channel that answers, before
the bridge (FreeSWITCH's group_confirm)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class AnswerSteps:
    """What a dial asks of the Leg B channel that answers, before the bridge
    (FreeSWITCH's group_confirm): ``key`` to press (``None``: only hear
    ``audio``), ``audio`` played first, ``timeout`` seconds to press it."""

    key: str | None
    audio: str | None
    timeout: int


def steps_of(channel: Mapping[str, str]) -> AnswerSteps | None:
    """A Leg B channel's answer steps, from the group_confirm_* variables it
    got from the dial string (``uuid_dump``)."""
    key = channel.get("variable_group_confirm_key")
    if not key:
        return None
    file = channel.get("variable_group_confirm_file") or None
    timeout = channel.get("variable_group_confirm_read_timeout", "")
    seconds = int(timeout) // 1000 if timeout.isdigit() else 5
    if key == "exec":
        return AnswerSteps(None, file.removeprefix("playback ") if file else None, seconds)
    return AnswerSteps(key, file, seconds)
