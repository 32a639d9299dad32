"""Bad input is refused before anything is dialed: each family of hostile or
broken request fields, through the real call service, with a switch that
records every command it is given. Each refusal is an InvalidRequest whose
details name the field and whose message names the rule."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controller.calls.groups import GroupRegistry
from controller.calls.request import CallRequest
from controller.calls.service import CallService
from controller.config import Config, MediaConfig
from controller.core.commands import OriginateLegA
from controller.errors import InvalidRequest
from controller.routing.spec import parse_group
from controller.tts import WhisperRenderer
from tests.conftest import LiveClients
from tests.unit.conftest import QuietListener, RecordingSwitch

LEG_A, LEG_B = "+27115550101", "+27115550202"


@pytest.fixture
async def service(tmp_path: Path,
                  live_clients: LiveClients) -> AsyncIterator[tuple[CallService, RecordingSwitch]]:
    config = Config()
    config.media = MediaConfig(whisper_dir=str(tmp_path / "media"),
                               recording_dir=str(tmp_path / "recordings"))
    config.whisper.max_seconds = 6.0
    switch = RecordingSwitch()
    groups = GroupRegistry("ZA", {"sales": parse_group("sales", {"agents": ["+27115550301"]}, "ZA",
                                                       lambda name: False)})
    calls = CallService(config, switch, WhisperRenderer(tmp_path / "media", max_seconds=6.0),  # type: ignore[arg-type]
                        QuietListener(), groups=groups, outbound=live_clients(config.outbound))
    yield calls, switch
    for call in list(calls.calls.values()):
        if call.task is not None:
            call.task.cancel()


DEEP: dict[str, Any] = {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}
AMI_HEADER = "\r\nAction: Hangup\r\nChannel: PJSIP/victim"
FULLWIDTH_DIGITS = "+" + "".join(chr(0xFF10 + int(d)) for d in "27115550202")

# (request fields, field named, words of the rule in the message)
BAD_INPUT: list[tuple[dict[str, Any], str, str]] = [
    # Numbers and targets.
    ({"leg_a": "0800FLOWERS"}, "leg_a", "use digits"),
    ({"leg_b": "12"}, "leg_b", "too short"),
    ({"leg_b": "+2711555020212345678"}, "leg_b", "too long"),
    ({"leg_b": FULLWIDTH_DIGITS}, "leg_b", "use digits"),
    ({"leg_b": "٠١١٥٥٥٠٢٠٢"}, "leg_b", "use digits"),
    ({"leg_b": "+27 11+555 0202"}, "leg_b", "use digits"),
    ({"leg_b": "011 555 0101"}, "leg_a", "the same"),
    ({"leg_b": ["+27115550202", "(011) 555-0101"]}, "leg_a", "the same"),
    ({"leg_b": "sip:agent@pbx.example.com;transport=tcp"}, "leg_b", "without ;parameters"),
    ({"leg_b": "sip:agent@pbx.example.com?X-Foo=bar"}, "leg_b", "or ?headers"),
    ({"leg_b": "sip:agent@pbx.example.com" + AMI_HEADER}, "leg_b", "without ;parameters"),
    ({"leg_b": "sip:agent@pbx.example.com:99999"}, "leg_b", "outside 1-65535"),
    ({"leg_b": "endpoint:desk-1,PJSIP/other"}, "leg_b", "not an endpoint name"),
    # Whisper text.
    ({"whisper": "Hello\r\nthere"}, "whisper", "control character U+000D"),
    ({"whisper": "Hello\nthere"}, "whisper", "control character U+000A"),
    ({"whisper": "Hello\tthere"}, "whisper", "control character U+0009"),
    ({"whisper": "Hello\x00there"}, "whisper", "control character U+0000"),
    ({"whisper": "Hello \u202eereht"}, "whisper", "control character U+202E"),
    ({"whisper": "Call from ${CALLERID(num)}"}, "whisper", "dialplan expressions"),
    ({"whisper": "Total $[1+1]"}, "whisper", "dialplan expressions"),
    ({"whisper": "C:\\temp"}, "whisper", "backslash"),
    ({"whisper": "<speak>Hi<break time='3s'/></speak>"}, "whisper", "markup"),
    ({"whisper": "Fish &amp; chips"}, "whisper", "markup"),
    ({"whisper": "x" * 1001}, "whisper", "the limit is 1000"),
    ({"whisper": "Connecting you to John Smith from the website form about the order "
                 "that was placed on the twenty first of November at nine in the morning"},
     "whisper", "the limit is 6 s (whisper.max_seconds)"),
    ({"fallbacks": {"no_answer": {"message": "Sorry" + AMI_HEADER}}},
     "fallbacks.no_answer.message", "control character"),
    ({"fallbacks": {"all_busy": {"queue": {"group": "sales", "message": "Wait ${EXTEN}"}}}},
     "fallbacks.all_busy.queue.message", "dialplan expressions"),
    # Caller ID.
    ({"caller_id": "123" + AMI_HEADER}, "caller_id", "digits with an optional leading +"),
    ({"caller_id": "+27115550101;tag=x"}, "caller_id", "digits with an optional leading +"),
    ({"caller_id": "${CALLERID(num)}"}, "caller_id", "digits with an optional leading +"),
    ({"caller_id": "\"Boss\" <+27115550101>"}, "caller_id", "digits with an optional leading +"),
    ({"caller_id": "+27 11 555"}, "caller_id", "digits with an optional leading +"),
    # Metadata.
    ({"metadata": {"blob": "x" * 17000}}, "metadata", "the limit is 16384"),
    ({"metadata": {f"k{i}": i for i in range(51)}}, "metadata", "the limit is 50"),
    ({"metadata": DEEP}, "metadata", "deeper than 5 levels"),
    ({"metadata": {"k" * 65: 1}}, "metadata", "at most 64 characters"),
    ({"metadata": {"a\r\nb": 1}}, "metadata", "without control characters"),
    ({"metadata": {"n": float("nan")}}, "metadata", "not NaN"),
    ({"metadata": {"s": "\ud800"}}, "metadata", "valid Unicode"),
    ({"metadata": {"custom_field": 42}}, "metadata.custom_field", "must be text"),
    ({"metadata": {"custom_field": "x" * 257}}, "metadata.custom_field", "at most 256"),
    ({"metadata": {"custom_field": "a\r\nX-Foo: b"}}, "metadata.custom_field",
     "without control characters"),
    # Webhook and dial-whom URLs.
    ({"webhook_url": "http://127.0.0.1:8080/hook?token=s3cret"}, "webhook_url",
     "outbound.allow_private"),
    ({"webhook_url": "http://2130706433/hook"}, "webhook_url", "non-public address"),
    ({"webhook_url": "http://[::ffff:169.254.169.254]/"}, "webhook_url", "non-public address"),
    ({"webhook_url": "https://hooks.example.com/a\r\nX-Foo: bar"}, "webhook_url", "whitespace"),
    ({"webhook_url": "gopher://hooks.example.com/"}, "webhook_url", "http(s) URL"),
    ({"leg_b": "http://10.0.0.8/whom"}, "leg_b", "outbound.allow_private"),
    ({"leg_b": ["+27115550202", "http://localhost/whom"]}, "leg_b[1]", "this machine"),
    ({"leg_b": "https://crm.example.com/whom", "dial_whom_fallback_url": "http://0x7f.1/"},
     "dial_whom_fallback_url", "non-public address"),
    ({"fallbacks": {"busy": {"dial": ["http://192.168.1.1/whom"]}}},
     "fallbacks.busy.dial[0]", "non-public address"),
]


@pytest.mark.parametrize(("fields", "field", "rule"), BAD_INPUT)
# An unvalidated request's raw fallbacks are dumped as they are, which pydantic warns of.
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
async def test_bad_input_is_refused_naming_the_field_and_rule_before_anything_is_dialed(
        service: tuple[CallService, RecordingSwitch], fields: dict[str, Any], field: str,
        rule: str) -> None:
    calls, switch = service
    # Unvalidated: the service's own checks hold even for a request the model
    # would have refused first (a whisper too long, a caller ID too long).
    request = CallRequest.model_construct(**{"leg_a": LEG_A, "leg_b": LEG_B, **fields})
    with pytest.raises(InvalidRequest) as refused:
        await calls.start(request)
    assert refused.value.details.get("field") == field or refused.value.error_id == "same-legs", \
        refused.value.as_dict()
    assert rule in refused.value.message, refused.value.message
    assert "s3cret" not in refused.value.message
    assert switch.commands == [] and switch.watched == [] and calls.calls == {}


async def test_punctuation_and_quotes_are_ordinary_speech(
        service: tuple[CallService, RecordingSwitch]) -> None:
    calls, switch = service
    call = await calls.start(CallRequest(
        leg_a=LEG_A, leg_b=LEG_B, whisper="Call from \"O'Brien\", re: order 42 (urgent)! Ok? -A.",
        caller_id="+27115550999", metadata={"custom_field": "order-42", "lead": {"id": 7}}))
    [originate] = switch.commands
    assert isinstance(originate, OriginateLegA) and originate.target == LEG_A
    assert call.whisper is not None and call.whisper.seconds > 1.0
    await asyncio.sleep(0)
