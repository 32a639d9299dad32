"""FreeSWITCH's hangup causes and results in the core's words: Q.850 numbers,
dial outcomes, and what a failed originate means."""

from __future__ import annotations

from collections.abc import Mapping

from controller.core.outcomes import DialOutcome

# FreeSWITCH's hangup cause names and their numbers (switch_types.h,
# switch_call_cause_t; the "Hangup Cause Code Table" of the documentation).
# Numbers above 127 are FreeSWITCH's own; switch_channel_cause_q850() reports
# them as 16 (NORMAL_CLEARING) in hangup_cause_q850, and so does q850_cause().
HANGUP_CAUSES: dict[str, int] = {
    "NONE": 0, "UNSPECIFIED": 0, "UNALLOCATED_NUMBER": 1, "NO_ROUTE_TRANSIT_NET": 2,
    "NO_ROUTE_DESTINATION": 3, "CHANNEL_UNACCEPTABLE": 6, "CALL_AWARDED_DELIVERED": 7,
    "NORMAL_CLEARING": 16, "USER_BUSY": 17, "NO_USER_RESPONSE": 18, "NO_ANSWER": 19,
    "SUBSCRIBER_ABSENT": 20, "CALL_REJECTED": 21, "NUMBER_CHANGED": 22,
    "REDIRECTION_TO_NEW_DESTINATION": 23, "EXCHANGE_ROUTING_ERROR": 25,
    "DESTINATION_OUT_OF_ORDER": 27, "INVALID_NUMBER_FORMAT": 28, "FACILITY_REJECTED": 29,
    "RESPONSE_TO_STATUS_ENQUIRY": 30, "NORMAL_UNSPECIFIED": 31,
    "NORMAL_CIRCUIT_CONGESTION": 34, "NETWORK_OUT_OF_ORDER": 38,
    "NORMAL_TEMPORARY_FAILURE": 41, "SWITCH_CONGESTION": 42, "ACCESS_INFO_DISCARDED": 43,
    "REQUESTED_CHAN_UNAVAIL": 44, "PRE_EMPTED": 45, "FACILITY_NOT_SUBSCRIBED": 50,
    "OUTGOING_CALL_BARRED": 52, "INCOMING_CALL_BARRED": 54, "BEARERCAPABILITY_NOTAUTH": 57,
    "BEARERCAPABILITY_NOTAVAIL": 58, "SERVICE_UNAVAILABLE": 63,
    "BEARERCAPABILITY_NOTIMPL": 65, "CHAN_NOT_IMPLEMENTED": 66,
    "FACILITY_NOT_IMPLEMENTED": 69, "SERVICE_NOT_IMPLEMENTED": 79,
    "INVALID_CALL_REFERENCE": 81, "INCOMPATIBLE_DESTINATION": 88,
    "INVALID_MSG_UNSPECIFIED": 95, "MANDATORY_IE_MISSING": 96, "MESSAGE_TYPE_NONEXIST": 97,
    "WRONG_MESSAGE": 98, "IE_NONEXIST": 99, "INVALID_IE_CONTENTS": 100,
    "WRONG_CALL_STATE": 101, "RECOVERY_ON_TIMER_EXPIRE": 102,
    "MANDATORY_IE_LENGTH_ERROR": 103, "PROTOCOL_ERROR": 111, "INTERWORKING": 127,
    "SUCCESS": 142, "ORIGINATOR_CANCEL": 487, "CRASH": 500, "SYSTEM_SHUTDOWN": 501,
    "LOSE_RACE": 502, "MANAGER_REQUEST": 503, "BLIND_TRANSFER": 600,
    "ATTENDED_TRANSFER": 601, "ALLOTTED_TIMEOUT": 602, "USER_CHALLENGE": 603,
    "MEDIA_TIMEOUT": 604, "PICKED_OFF": 605, "USER_NOT_REGISTERED": 606,
    "PROGRESS_TIMEOUT": 607, "INVALID_GATEWAY": 608, "GATEWAY_DOWN": 609,
    "INVALID_URL": 610, "INVALID_PROFILE": 611, "NO_PICKUP": 612, "SRTP_READ_ERROR": 613,
}

# A far end's refusals (a final 486 or 603), as the bridge reports them.
REFUSALS = ("USER_BUSY", "CALL_REJECTED")

# The bridge's originate_disposition in the core's words; anything else means
# nobody was reached (no route, a bad gateway, congestion...).
_DIAL_OUTCOME = {
    "USER_BUSY": DialOutcome.BUSY,
    "NO_ANSWER": DialOutcome.NO_ANSWER,
    "NO_USER_RESPONSE": DialOutcome.NO_ANSWER,
    # A leg_timeout ends each unanswered leg with ALLOTTED_TIMEOUT
    # (switch_ivr_originate.c check_per_channel_timeouts): a ring timeout.
    "ALLOTTED_TIMEOUT": DialOutcome.NO_ANSWER,
    "ORIGINATOR_CANCEL": DialOutcome.CANCELED,
    # switch_ivr_originate() sets this when a leg was accepted.
    "CALL ACCEPTED": DialOutcome.ANSWERED,
    "SUCCESS": DialOutcome.ANSWERED,
}

# What a failed originate's -ERR means, for a person reading the result.
_ORIGINATE_HINTS = {
    "INVALID_GATEWAY": "no such sofia gateway; check [freeswitch] gateway and routes",
    "GATEWAY_DOWN": "the sofia gateway is down (not registered or failing OPTIONS pings)",
    "INVALID_PROFILE": "no such sofia profile; check [freeswitch] uri_profile",
    "INVALID_URL": "FreeSWITCH could not read the dial string",
    "NO_ROUTE_DESTINATION": "the far end found no route to the number",
    "USER_NOT_REGISTERED": "the user is not registered",
    "SUBSCRIBER_ABSENT": "no such user in FreeSWITCH's directory",
    "NORMAL_TEMPORARY_FAILURE": "the far end failed temporarily",
    "DESTINATION_OUT_OF_ORDER": "the far end did not respond",
}


def q850_cause(event: Mapping[str, str]) -> int:
    """A hangup's Q.850 number: variable_hangup_cause_q850 when FreeSWITCH has
    set it (CHANNEL_HANGUP_COMPLETE), else from the cause's name."""
    value = event.get("variable_hangup_cause_q850", "")
    if value.isdigit():
        return int(value)
    code = HANGUP_CAUSES.get(cause_name(event), 0)
    return code if code <= 127 else HANGUP_CAUSES["NORMAL_CLEARING"]


def cause_name(event: Mapping[str, str]) -> str:
    return (event.get("Hangup-Cause") or event.get("variable_hangup_cause") or "").upper()


def originate_failure(result: str) -> str:
    """A failed originate's reply, in words: ``-ERR USER_BUSY`` and the like."""
    text = result.strip() or "no reply"
    cause = text.removeprefix("-ERR").strip().split(" ")[0].upper()
    hint = _ORIGINATE_HINTS.get(cause)
    return f"FreeSWITCH originate: {text}" + (f" ({hint})" if hint else "")


def dial_outcome(e: Mapping[str, str]) -> DialOutcome:
    """How leg A's bridge ended, from its variables. switch_ivr_originate()
    sets originate_disposition wherever it sets its Asterisk-style dial status."""
    cause = (e.get("variable_originate_disposition") or e.get("Application-Response")
             or "FAILED").upper()
    return _DIAL_OUTCOME.get(cause, DialOutcome.FAILED)
