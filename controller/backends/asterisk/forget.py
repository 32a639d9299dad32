"""Deleting the outcomes the dialplan keeps in AstDB, several calls at a time.

Leg A's hangup handler keeps each call's outcome (``callconnect/<call id>``)
so that a restarted controller still learns how a call ended. Once the
controller has recorded the end it deletes the entry. The AMI DBDel action
needs the ``system`` class, which the controller's account does not have, so
the deletion is a Local channel into ``callconnect-forget``, which deletes the
entries of the call ids in its ``CC_FORGET`` variable and hangs up.

A Local channel costs the switch two channels and the controller their
events, so ended calls are gathered for up to :data:`FORGET_EVERY` seconds
and forgotten together: at 30 calls/s, two originates a second instead of 30.
Pure: the backend sends the actions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .actions import fits_a_line

CONTEXT_FORGET = "callconnect-forget"
# How long an ended call's outcome may stay in AstDB before it is deleted.
FORGET_EVERY = 1.0
# Joins the call ids in CC_FORGET; the dialplan takes them apart with SHIFT().
# Not a comma: the Originate's Variable header splits on commas.
SEPARATOR = "&"
_VARIABLE = "CC_FORGET"
_CALL_ID = re.compile(r"[0-9a-f][0-9a-f-]{0,63}")


def is_call_id(call_id: str) -> bool:
    """Only these reach the dialplan's DB_DELETE (which checks them again)."""
    return _CALL_ID.fullmatch(call_id) is not None


def forget_batches(call_ids: Iterable[str]) -> list[list[str]]:
    """The call ids in as few batches as fit: each batch's Variable header
    stays within a line Asterisk reads."""
    batches: list[list[str]] = []
    for call_id in call_ids:
        if not is_call_id(call_id):
            raise ValueError(f"not a call id: {call_id[:70]!r}")
        if batches and fits_a_line("Variable", _variable([*batches[-1], call_id])):
            batches[-1].append(call_id)
        else:
            batches.append([call_id])
    return batches


def _variable(batch: list[str]) -> str:
    return f"{_VARIABLE}={SEPARATOR.join(batch)}"


def forget_action(batch: list[str]) -> dict[str, str]:
    """The Originate that deletes these calls' kept outcomes: it is never
    answered, and ends once the entries are gone."""
    return {"Action": "Originate", "ActionID": f"forget-{batch[0]}",
            "Channel": f"Local/forget@{CONTEXT_FORGET}", "Application": "NoOp",
            "Timeout": "5000", "Async": "true",
            "Variable": _variable(batch)}
