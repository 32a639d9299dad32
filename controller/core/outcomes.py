"""How legs and calls end, in the switch-neutral words the core uses.

Each backend translates its own words (Asterisk's dial status, FreeSWITCH's
hangup causes) into these."""

from __future__ import annotations

from enum import StrEnum


class Leg(StrEnum):
    A = "a"
    B = "b"



class CallStatus(StrEnum):
    """A finished call's status, as hosted call-connect products report it."""

    COMPLETED = "completed"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    FAILED = "failed"
    CANCELED = "canceled"


class LegStatus(StrEnum):
    PENDING = "pending"  # not dialed yet
    INITIATED = "initiated"
    RINGING = "ringing"
    ANSWERED = "answered"
    COMPLETED = "completed"  # answered, then hung up
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELED = "canceled"  # stopped by us before it was answered
    DECLINED = "declined"  # answered, then did not press the confirm key
    NOT_DIALED = "not-dialed"


class DialOutcome(StrEnum):
    """How the switch's dial of leg B ended, as each backend translates it."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"  # the dial was stopped before anyone answered
    FAILED = "failed"  # no route, congestion, a bad target: nobody was reached


class HangupBy(StrEnum):
    LEG_A = "leg_a"
    LEG_B = "leg_b"
    TIME_LIMIT = "time_limit"
    API = "api"
    SWITCH = "switch"


# Q.850 cause codes (the switch's hangup causes) that decide a leg's outcome.
CAUSE_NORMAL_CLEARING = 16
CAUSE_USER_BUSY = 17
CAUSE_NO_USER_RESPONSE = 18
CAUSE_NO_ANSWER = 19
CAUSE_CALL_REJECTED = 21

# The SIP response a Q.850 cause stands for (RFC 3398, section 8.2.6.1).
Q850_TO_SIP = {
    1: 404, 2: 404, 3: 404, 17: 486, 18: 408, 19: 480, 20: 480, 21: 603, 22: 410,
    26: 404, 27: 502, 28: 484, 29: 501, 31: 480, 34: 503, 38: 503, 41: 503,
    42: 503, 47: 503, 55: 403, 57: 403, 58: 503, 65: 488, 69: 501, 79: 501,
    87: 403, 88: 503, 102: 504, 111: 500, 127: 500,
}


def leg_status_from_cause(cause: int, answered: bool) -> LegStatus:
    """Classify how a leg ended from its hangup cause, not from how the dial
    ended: a switch may report a 603 Decline and a ring timeout alike."""
    if answered:
        return LegStatus.COMPLETED
    if cause == CAUSE_USER_BUSY:
        return LegStatus.BUSY
    if cause in (CAUSE_NO_USER_RESPONSE, CAUSE_NO_ANSWER):
        return LegStatus.NO_ANSWER
    if cause == CAUSE_CALL_REJECTED:
        return LegStatus.REJECTED
    return LegStatus.FAILED


CALL_STATUS_OF_UNANSWERED_LEG = {
    LegStatus.BUSY: CallStatus.BUSY,
    LegStatus.REJECTED: CallStatus.BUSY,
    LegStatus.NO_ANSWER: CallStatus.NO_ANSWER,
    LegStatus.CANCELED: CallStatus.CANCELED,
    LegStatus.DECLINED: CallStatus.NO_ANSWER,
}



_LEG_STATUS_OF_DIAL_OUTCOME = {
    DialOutcome.BUSY: LegStatus.BUSY,
    DialOutcome.NO_ANSWER: LegStatus.NO_ANSWER,
    DialOutcome.CANCELED: LegStatus.CANCELED,
}


def leg_status_from_dial(outcome: DialOutcome) -> LegStatus:
    """Leg B's status when only the dial's end tells it (no party's own cause)."""
    return _LEG_STATUS_OF_DIAL_OUTCOME.get(outcome, LegStatus.FAILED)
