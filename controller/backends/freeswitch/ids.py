"""Channel and job ids: the ones we give FreeSWITCH, and telling them apart.

Every channel of ours carries an id we chose before originating
(``origination_uuid``): one for Leg A and one per Leg B channel (each target
of each attempt gets its own); Leg A's ``bgapi originate`` carries a Job-UUID
derived from the call id. So nothing is matched by timing or by parsing
channel names.
"""

from __future__ import annotations

import uuid

from controller.core.outcomes import Leg

_JOB_NAMESPACE = uuid.UUID("6f0e7c3a-4b1d-5c2e-9a8f-c411c0dec0de")
_LEG_NAMESPACE = uuid.UUID("0c4a11e9-7f3b-5d21-8e64-2b9c0dec0de5")

# FreeSWITCH keeps a scheduled hangup's channel id in a 37-byte buffer
# (switch_ivr_async.c struct hangup_helper: SWITCH_UUID_FORMATTED_LENGTH + 1):
# sched_hangup on a longer id hangs nothing up. Every id we give a channel
# fits in 36 characters.
MAX_CHANNEL_ID = 36
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
MAX_B_LEGS = len(_B36) ** 2  # per call, over all its attempts


def _compact(call_id: str) -> str:
    """32 hex digits standing for the call: the call id itself when it is a
    UUID (as the controller makes them), else a UUID derived from it."""
    try:
        parsed = uuid.UUID(call_id)
    except ValueError:
        return uuid.uuid5(_LEG_NAMESPACE, call_id).hex
    return parsed.hex if str(parsed) == call_id.lower() else uuid.uuid5(_LEG_NAMESPACE, call_id).hex


def leg_uuid(call_id: str, leg: Leg, index: int = 0) -> str:
    """The channel id we give a leg (origination_uuid): ``<32 hex>-a`` for Leg
    A and ``<32 hex>-b<nn>`` for the call's ``index``-th Leg B channel (two
    base-36 digits), so that every id fits FreeSWITCH's 36 characters."""
    base = _compact(call_id)
    if leg is Leg.A:
        return f"{base}-a"
    if not 0 <= index < MAX_B_LEGS:
        raise ValueError(f"leg B channel number {index} out of range")
    return f"{base}-b{_B36[index // 36]}{_B36[index % 36]}"


def b_leg_prefix(call_id: str) -> str:
    """What every Leg B channel id of the call starts with."""
    return f"{_compact(call_id)}-b"


def b_leg_index(call_id: str, channel: str) -> int | None:
    """The number in one of our Leg B channel ids, or None."""
    prefix = b_leg_prefix(call_id)
    digits = channel[len(prefix):]
    if not channel.startswith(prefix) or len(digits) != 2 or any(c not in _B36 for c in digits):
        return None
    return _B36.index(digits[0]) * 36 + _B36.index(digits[1])


def originate_job_uuid(call_id: str) -> str:
    """The Job-UUID of Leg A's bgapi originate. mod_event_socket keeps at most
    36 characters of a Job-UUID, so it is derived, not ``<call_id>-job``."""
    return str(uuid.uuid5(_JOB_NAMESPACE, call_id + "/originate-a"))
