"""Bad input through the daemon's API on the real lab: every family is
refused with a 4xx whose JSON names the field and the rule, no call is
stored, and nothing reaches Asterisk (no call.placing in the log; the
autouse no_channels_left fixture checks the switch). Ordinary punctuation
in a whisper still connects, and the log never holds a secret."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import StartReceiver
from tests.lab.conftest import SIGNING_SECRET, TOKEN, DaemonProcess, api, wait_for_state

AGENT, CUSTOMER = "+27115550101", "+27115550202"
# Answers, talks, and hangs up by itself after 4 s.
HANGS_UP = "+27115550601"
AMI_HEADER = "\r\nAction: Hangup\r\nChannel: PJSIP/lab-answer"
FULLWIDTH_DIGITS = "+" + "".join(chr(0xFF10 + int(d)) for d in "27115550202")

# (request fields, HTTP status, error_id, details.field, words of the rule in the message)
BAD_INPUT: list[tuple[dict[str, Any], int, str, str, str]] = [
    ({"leg_a": "0800FLOWERS"}, 400, "invalid-number", "leg_a", "use digits"),
    ({"leg_b": "12"}, 400, "invalid-number", "leg_b", "too short"),
    ({"leg_b": "+2711555020212345678"}, 400, "invalid-number", "leg_b", "too long"),
    ({"leg_b": FULLWIDTH_DIGITS}, 400, "invalid-number", "leg_b", "use digits"),
    ({"leg_b": "+27 11+555 0202"}, 400, "invalid-number", "leg_b", "use digits"),
    ({"leg_b": "011 555 0101"}, 400, "same-legs", "", "the same"),
    ({"leg_b": "sip:lab@127.0.0.1:5071;transport=tcp"}, 400, "invalid-number", "leg_b",
     "without ;parameters"),
    ({"leg_b": "sip:lab@127.0.0.1:5071?X-Foo=bar"}, 400, "invalid-number", "leg_b", "?headers"),
    ({"leg_b": "sip:lab@127.0.0.1:5071" + AMI_HEADER}, 400, "invalid-number", "leg_b",
     "without ;parameters"),
    # Refused here, not after leg A answered (FreeSWITCH quoting and
    # uuid_broadcast syntax; one rule for the API and both switches).
    ({"leg_b": "sip:a'b@127.0.0.1:5071"}, 400, "invalid-number", "leg_b", "not a SIP URI"),
    ({"leg_b": "sip:lab!x@127.0.0.1:5071"}, 400, "invalid-number", "leg_b", "not a SIP URI"),
    ({"leg_a": "sip:a[1]@127.0.0.1:5071"}, 400, "invalid-number", "leg_a", "not a SIP URI"),
    ({"leg_b": "group:.."}, 400, "invalid-field", "leg_b", "is not a group name"),
    ({"leg_b": "group:\uff53ales"}, 400, "invalid-field", "leg_b", "is not a group name"),
    # JSON's own types only, and whole strings.
    ({"ring_timeout": True}, 400, "invalid-field", "ring_timeout", "valid integer"),
    ({"ring_timeout": "30"}, 400, "invalid-field", "ring_timeout", "valid integer"),
    ({"record": "yes"}, 400, "invalid-field", "record", "valid boolean"),
    ({"calling_hours": "08:00-21:00\n"}, 400, "invalid-field", "calling_hours",
     "nothing around it"),
    ({"calling_days": ["mon\n"]}, 400, "invalid-field", "calling_days", "is not a day"),
    ({"whisper": "Connecting you\r\nAction: Hangup"}, 400, "invalid-field", "whisper",
     "control character U+000D"),
    ({"whisper": "Tab\there"}, 400, "invalid-field", "whisper", "control character U+0009"),
    ({"whisper": "Bidi \u202eereht"}, 400, "invalid-field", "whisper", "control character U+202E"),
    ({"whisper": "From ${CALLERID(num)}"}, 400, "invalid-field", "whisper", "dialplan expressions"),
    ({"whisper": "Sum $[1+1]"}, 400, "invalid-field", "whisper", "dialplan expressions"),
    ({"whisper": "C:\\temp"}, 400, "invalid-field", "whisper", "backslash"),
    ({"whisper": "<speak>Hi</speak>"}, 400, "invalid-field", "whisper", "markup"),
    ({"whisper": "Fish &amp; chips"}, 400, "invalid-field", "whisper", "markup"),
    ({"whisper": "x" * 1001}, 400, "invalid-field", "whisper", "at most 1000 characters"),
    ({"whisper": "Connecting you to John Smith from the website form. " * 12}, 400,
     "invalid-field", "whisper", "whisper.max_seconds"),
    ({"fallbacks": {"no_answer": {"message": "Sorry" + AMI_HEADER}}}, 400, "invalid-field",
     "fallbacks.no_answer.message", "control character"),
    ({"caller_id": "123\r\nAction: Hangup"}, 400, "invalid-field", "caller_id",
     "digits with an optional leading +"),
    ({"caller_id": "123" + AMI_HEADER}, 400, "invalid-field", "caller_id",
     "at most 32 characters"),
    ({"caller_id": "+27115550101;tag=x"}, 400, "invalid-field", "caller_id", "digits"),
    ({"caller_id": "${CALLERID(num)}"}, 400, "invalid-field", "caller_id", "digits"),
    ({"metadata": {"blob": "x" * 17000}}, 400, "invalid-field", "metadata", "16384"),
    ({"metadata": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}, 400, "invalid-field", "metadata",
     "deeper than 5 levels"),
    ({"metadata": {"custom_field": "a\r\nX-Foo: b"}}, 400, "invalid-field",
     "metadata.custom_field", "without control characters"),
    ({"webhook_url": "http://127.0.0.1:9/hook?token=s3cret"}, 400, "invalid-field", "webhook_url",
     "outbound.allow_private"),
    ({"webhook_url": "http://2130706433/hook"}, 400, "invalid-field", "webhook_url",
     "non-public address"),
    ({"webhook_url": "http://hooks.example.com/a\r\nX-Foo: bar"}, 400, "invalid-field",
     "webhook_url", "whitespace"),
    ({"leg_b": "http://127.0.0.1:9/whom"}, 400, "invalid-field", "leg_b", "outbound.allow_private"),
    ({"leg_b": "https://crm.example.com/whom", "dial_whom_fallback_url": "http://localhost/w"},
     400, "invalid-field", "dial_whom_fallback_url", "this machine"),
]


@pytest.mark.lab
async def test_every_bad_input_family_is_refused_before_anything_is_dialed(
        start_daemon: Callable[..., DaemonProcess]) -> None:
    # As a production config would be: webhooks to loopback are not allowed.
    daemon = start_daemon(CALLCONNECT_OUTBOUND_ALLOW_PRIVATE="false")
    await daemon.ready()
    async with api(daemon) as client:
        for fields, status, error_id, field, rule in BAD_INPUT:
            body = {"leg_a": AGENT, "leg_b": CUSTOMER, "record": False, **fields}
            response = await client.post("/v1/calls", json=body)
            case = f"{list(fields)}: {response.status_code} {response.text[:300]}"
            assert response.status_code == status, case
            error = response.json()
            assert error["error_id"] == error_id, case
            assert error_id == "same-legs" or error["details"]["field"] == field, case
            assert rule in error["message"], case
            assert "s3cret" not in response.text, case
        listed = (await client.get("/v1/calls")).json()
    assert listed["calls"] == [], "a refused request left a call behind"
    log = daemon.log.read_text()
    assert "call.placing" not in log, "something was dialed"
    refused = [json.loads(line) for line in log.splitlines()
               if '"call.refused"' in line or '"api.refused"' in line]
    assert len(refused) == len(BAD_INPUT), "every refusal is logged"
    assert "s3cret" not in log and TOKEN not in log


@pytest.mark.lab
async def test_commas_quotes_and_punctuation_are_spoken_and_the_call_connects(
        daemon: DaemonProcess) -> None:
    whisper = "Call from \"O'Brien\", re: order 42, urgent!"
    async with api(daemon) as client:
        placed = await client.post("/v1/calls", json={
            "leg_a": AGENT, "leg_b": HANGS_UP, "whisper": whisper, "time_limit": 2,
            "record": False})
        assert placed.status_code == 202, placed.text
        ended = await wait_for_state(client, placed.json()["call_uuid"], "ended")
    result = ended["result"]
    assert result["status"] == "completed", result["reason"]
    assert result["whisper"]["text"] == whisper and result["whisper"]["played"] is True
    assert result["leg_b_answered_at"] is not None


@pytest.mark.lab
async def test_the_log_never_holds_the_token_the_signing_secret_or_a_url_query(
        daemon: DaemonProcess, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()  # its URL carries ?token=s3cret
    async with api(daemon) as client:
        placed = await client.post("/v1/calls", json={
            "leg_a": AGENT, "leg_b": HANGS_UP, "time_limit": 1, "record": False,
            "webhook_url": receiver.url, "metadata": {"custom_field": "order-42"}})
        assert placed.status_code == 202, placed.text
        await wait_for_state(client, placed.json()["call_uuid"], "ended")
        # Refusals too: a bad token, and a bad URL whose query holds a token.
        async with api(daemon, token="wrong-" + TOKEN) as intruder:
            assert (await intruder.get("/v1/calls")).status_code == 401
        refused = await client.post("/v1/calls", json={
            "leg_a": AGENT, "leg_b": CUSTOMER,
            "webhook_url": "ftp://user:pa55word@hooks.example.com/x?token=s3cret"})
        assert refused.status_code == 400
    await asyncio.wait_for(receiver.arrived.wait(), 30)
    await asyncio.sleep(0.5)  # the delivery's own log line
    log = daemon.log.read_text()
    assert "webhook.delivered" in log
    secret_key = SIGNING_SECRET.removeprefix("whsec_")
    for secret in (TOKEN, secret_key, "s3cret", "pa55word"):
        assert secret not in log, f"{secret!r} is in the daemon's log"
