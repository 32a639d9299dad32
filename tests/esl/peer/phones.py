"""The far ends: phones chosen by the number dialed, and callers that call in."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Phone:
    """What the far end does with the INVITE (the lab's SIPp phones)."""

    ring: bool = True  # 180 Ringing first
    answer_after: float | None = 0.5
    hangup_after: float | None = None  # BYE this long after answering
    refuse_after: float | None = None
    refuse_code: int = 0
    refuse_cause: str = ""
    press: str | None = None  # the key it sends (RFC 2833) when asked for one
    press_after: float = 0.1  # after the prompt has ended


_KEYS = {"star": "*", "hash": "#"}


@dataclass(frozen=True)
class Caller:
    """A phone that calls the switch (an inbound call): once answered it
    presses ``keys`` (RFC 2833), each (seconds after the answer, key), and
    hangs up ``hangup_after`` seconds after the answer (None: it waits for
    the switch's BYE)."""

    number: str = "+27115550111"
    keys: tuple[tuple[float, str], ...] = ()
    hangup_after: float | None = None


# mod_sofia hangup_cause_to_sip(): the SIP status an unanswered inbound call
# is refused with, for the causes the peer uses (480 for the rest).
SIP_STATUS = {"UNALLOCATED_NUMBER": 404, "USER_BUSY": 486, "NO_ANSWER": 480,
              "CALL_REJECTED": 603, "NORMAL_CIRCUIT_CONGESTION": 503,
              "RECOVERY_ON_TIMER_EXPIRE": 504, "NORMAL_TEMPORARY_FAILURE": 503}


def phone_for(destination: str, answer_delay: float, reject_delay: float,
              hangup_after: float) -> Phone:
    if destination.startswith(("sip:", "sips:")):
        return phone_named(destination.split(":", 1)[1].split("@", 1)[0], answer_delay,
                           reject_delay)
    block = destination[-4:-2]
    if block == "03":
        return Phone(answer_after=None)
    if block == "04":
        return phone_named("busy", answer_delay, reject_delay)
    if block == "05":
        return phone_named("reject", answer_delay, reject_delay)
    if block == "06":
        return Phone(answer_after=answer_delay, hangup_after=hangup_after)
    return Phone(answer_after=answer_delay)


def phone_named(user: str, answer_delay: float, reject_delay: float) -> Phone:
    """A phone by its name (a SIP URI's user part, a directory user):
    ``busy``, ``reject``, ``no-answer``, ``answer``, or any of
    ``answer-after-<ms>``, ``hangup-after-<ms>``, ``press-<key>`` (0-9,
    ``star``, ``hash``: the key it presses when a confirm prompt asks)."""
    if user == "busy":
        return Phone(ring=False, answer_after=None, refuse_after=0.0, refuse_code=486,
                     refuse_cause="USER_BUSY")
    if user == "reject":
        return Phone(answer_after=None, refuse_after=reject_delay, refuse_code=603,
                     refuse_cause="CALL_REJECTED")
    if user.startswith("no-answer"):
        return Phone(answer_after=None)
    answer = re.search(r"answer-after-([0-9]+)", user)
    hangup = re.search(r"hangup-after-([0-9]+)", user)
    press = re.search(r"press-([0-9]|star|hash)", user)
    return Phone(answer_after=int(answer.group(1)) / 1000 if answer else answer_delay,
                 hangup_after=int(hangup.group(1)) / 1000 if hangup else None,
                 press=_KEYS.get(press.group(1), press.group(1)) if press else None)

