"""Actions made ready for the switch, through the real renderer (espeak-ng
and sox) and the call service's own checks: what the switch gets, and every
rule that needs the config refused with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.actions.prepare import ActionContext, ActionPreparer
from controller.actions.spec import parse_answer
from controller.calls.checks import RequestChecks
from controller.calls.groups import GroupRegistry
from controller.config import Config, MediaConfig
from controller.errors import InvalidRequest
from controller.outbound import OutboundConfig
from controller.routing.spec import parse_group
from controller.tts import WhisperRenderer

CALLER, AGENT, NUMBER = "+27115550101", "+27115550301", "+27115550900"
INBOUND = ActionContext("call-1", CALLER, caller=CALLER)
OUTBOUND = ActionContext("call-1", CALLER)


@pytest.fixture
def preparer(tmp_path: Path) -> ActionPreparer:
    config = Config()
    config.media = MediaConfig(whisper_dir=str(tmp_path / "media"),
                               recording_dir=str(tmp_path / "recordings"),
                               actions_dir=str(tmp_path / "actions"),
                               actions_switch_dir="/switch/actions")
    config.calls.caller_ids = [NUMBER]
    (tmp_path / "actions").mkdir()
    (tmp_path / "actions" / "welcome.wav").write_bytes(b"RIFF")
    (tmp_path / "secret.wav").write_bytes(b"RIFF")
    (tmp_path / "actions" / "link.wav").symlink_to(tmp_path / "secret.wav")
    renderer = WhisperRenderer(tmp_path / "media", max_seconds=6.0)
    groups = GroupRegistry("ZA", {"sales": parse_group("sales", {"agents": [AGENT]}, "ZA",
                                                       lambda name: False)})
    return ActionPreparer(config, RequestChecks(config, groups, renderer), renderer)


async def prepare(preparer: ActionPreparer, *actions: dict[str, object],
                  context: ActionContext = INBOUND) -> list:  # type: ignore[type-arg]
    return await preparer.prepare(parse_answer({"actions": list(actions)}), context)


async def refused(preparer: ActionPreparer, action: dict[str, object],
                  context: ActionContext = INBOUND) -> str:
    with pytest.raises(InvalidRequest) as caught:  # InvalidField, InvalidNumber
        await prepare(preparer, {"type": "pause", "seconds": 1}, action, context=context)
    return str(caught.value.details["field"])


async def test_texts_are_rendered_and_only_their_files_reach_the_switch(
        preparer: ActionPreparer, tmp_path: Path) -> None:
    play, gather, voiced = await prepare(
        preparer, {"type": "play", "text": "Your appointment is at nine", "loop": 2},
        {"type": "gather", "prompt": "Press 1 to confirm", "max_digits": 1},
        {"type": "play", "text": "Your appointment is at nine", "voice": "en-us"})
    assert play.type == "play" and play.spec["loop"] == 2 and play.id.startswith("act_")
    [audio] = play.audio
    assert Path(audio).parent == tmp_path / "media" and Path(audio).stat().st_size > 1000
    assert gather.audio and Path(gather.audio[0]).is_file() and gather.audio != play.audio
    # Another voice is another rendering.
    assert voiced.audio != play.audio
    assert len({play.id, gather.id, voiced.id}) == 3


async def test_a_file_is_a_name_in_the_operators_folder_as_the_switch_sees_it(
        preparer: ActionPreparer) -> None:
    [play] = await prepare(preparer, {"type": "play", "file": "welcome.wav"})
    assert play.audio == ("/switch/actions/welcome.wav",)
    assert await refused(preparer, {"type": "play", "file": "missing.wav"}) == "actions[1].file"
    # A link that leads out of the folder is not in it.
    assert await refused(preparer, {"type": "play", "file": "link.wav"}) == "actions[1].file"


async def test_record_start_gets_a_path_beside_the_recordings(preparer: ActionPreparer,
                                                              tmp_path: Path) -> None:
    start, stop = await prepare(preparer, {"type": "record", "command": "start"},
                                {"type": "record", "command": "stop"})
    assert start.record_file == str(tmp_path / "recordings" / f"call-1-{start.id}.wav")
    assert stop.record_file is None


async def test_a_connect_gets_leg_bs_plan_as_a_call_request_would(preparer: ActionPreparer,
                                                                  tmp_path: Path) -> None:
    [connect] = await prepare(preparer, {
        "type": "connect", "to": ["011 555 0202", "group:sales"], "whisper": "Incoming sales call",
        "caller_id": "caller", "ring_timeout": 20, "time_limit": 600, "record": False,
        "confirm_key": "1"})
    plan = connect.connect
    assert plan is not None
    assert (plan.call_id, plan.leg_a, plan.leg_b) == ("call-1", CALLER, "+27115550202, group:sales")
    assert (plan.ring_timeout, plan.time_limit, plan.confirm_key) == (20, 600, "1")
    # "caller": the agent sees the inbound caller's number.
    assert plan.caller_id == CALLER
    assert plan.whisper_audio and Path(plan.whisper_audio).is_file()
    assert plan.recording_file is None
    [allowed] = await prepare(preparer, {"type": "connect", "to": AGENT, "caller_id": NUMBER})
    assert allowed.connect is not None and allowed.connect.caller_id == NUMBER


@pytest.mark.parametrize(("action", "field"), [
    ({"type": "connect", "to": "group:nobody"}, "actions[1].to"),
    ({"type": "connect", "to": ["+27115550202", "not a number"]}, "actions[1].to[1]"),
    ({"type": "connect", "to": AGENT, "caller_id": "+27115550999"}, "actions[1].caller_id"),
    ({"type": "connect", "to": CALLER}, "actions[1].to"),  # the call's own leg
    ({"type": "connect", "to": AGENT, "whisper": "a ${x}"}, "actions[1].whisper"),
    ({"type": "connect", "to": AGENT, "fallbacks": {"no_answer": {"dial": ["nope"]}}},
     "actions[1].fallbacks.no_answer.dial[0]"),
    ({"type": "connect", "to": "http://127.0.0.1/whom"}, "actions[1].to"),
    ({"type": "connect", "to": AGENT, "dial_whom_fallback_url": "http://10.0.0.1/x"},
     "actions[1].dial_whom_fallback_url"),
    ({"type": "gather", "action_url": "http://127.0.0.1:9/next"}, "actions[1].action_url"),
    ({"type": "redirect", "url": "ftp://ivr.example.com/next"}, "actions[1].url"),
])
async def test_rules_that_need_the_config_name_the_field(preparer: ActionPreparer,
                                                         action: dict[str, object],
                                                         field: str) -> None:
    assert await refused(preparer, action) == field


async def test_caller_is_for_inbound_calls_only(preparer: ActionPreparer) -> None:
    action = {"type": "connect", "to": AGENT, "caller_id": "caller"}
    assert await refused(preparer, action, OUTBOUND) == "actions[1].caller_id"


async def test_urls_the_outbound_policy_allows_pass(preparer: ActionPreparer) -> None:
    preparer.config.outbound = OutboundConfig(allow_private=True)
    gather, redirect = await prepare(
        preparer, {"type": "gather", "action_url": "http://127.0.0.1:9/next"},
        {"type": "redirect", "url": "http://127.0.0.1:9/menu"})
    assert gather.spec["action_url"] == "http://127.0.0.1:9/next"
    assert redirect.spec["url"] == "http://127.0.0.1:9/menu"
