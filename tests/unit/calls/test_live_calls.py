"""Single-leg calls and actions on a live call, through the real call service
(the core's LiveCall, the real renderer, real HTTP receivers on loopback for
action URLs and dial-whom), with a switch that records every command it is
given: what reached the switch, what the URLs were sent, what was reported."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from controller.actions.spec import MAX_ACTIONS, MAX_ACTIONS_PER_CALL, parse_answer
from controller.backends.base import IncomingCall
from controller.calls.decision import Placed
from controller.calls.groups import GroupRegistry
from controller.calls.live import Inbound
from controller.calls.request import make_request
from controller.calls.runner import ActiveCall
from controller.calls.service import CallService
from controller.config import Config, MediaConfig
from controller.core.commands import (
    Command,
    DialLegB,
    GatherDigits,
    HangupLegs,
    OriginateLegA,
    PlayToLegA,
    WaitForActions,
)
from controller.core.events import (
    DigitPressed,
    DigitsGathered,
    Event,
    LegAnswered,
    LegCreated,
    LegEnded,
    LegRinging,
    PlayFinished,
)
from controller.core.outcomes import Leg
from controller.core.states import Transition
from controller.errors import InvalidRequest, NotALiveCall, TooManyActions
from controller.jsonio import loads
from controller.outbound import OutboundConfig
from controller.routing.spec import parse_group
from controller.tts import WhisperRenderer
from tests.conftest import LiveClients, Serve
from tests.openapi_document import OpenApiDocument
from tests.unit.conftest import RecordingSwitch

CUSTOMER, NUMBER, AGENT = "+27115550101", "+27115550900", "+27115550301"
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
WAIT_SECONDS = 10.0  # a bound on every wait: each expected step comes far sooner


class Reports:
    """A call listener that keeps the status callbacks and results."""

    def __init__(self) -> None:
        self.reported: list[tuple[str, dict[str, Any]]] = []
        self.results: dict[str, dict[str, Any]] = {}

    async def call_created(self, call: ActiveCall) -> None: ...

    async def call_changed(self, call: ActiveCall, transitions: list[Transition]) -> None: ...

    async def call_ended(self, call: ActiveCall, result: dict[str, Any]) -> None:
        self.results[call.call_id] = result

    async def call_reported(self, call: ActiveCall, event: str, data: dict[str, Any]) -> None:
        self.reported.append((event, data))

    def events(self) -> list[str]:
        return [event for event, _ in self.reported]


class Receiver:
    """A real HTTP server on loopback: each path answers JSON given in advance
    (dial-whom paths answer text); every request is kept."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, str, str]] = {}
        self.received: list[tuple[str, dict[str, str], bytes, dict[str, str]]] = []
        self.base = ""

    def url(self, path: str, answer: Any, status: int = 200, kind: str = "application/json") -> str:
        self.answers[path] = (status, answer if isinstance(answer, str) else json.dumps(answer),
                              kind)
        return f"{self.base}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.path, dict(request.headers), await request.read(),
                              dict(request.query)))
        status, body, kind = self.answers.get(request.path, (404, "", "text/plain"))
        return web.Response(status=status, text=body, content_type=kind)

    def posted(self, path: str) -> list[dict[str, Any]]:
        found = []
        for got, headers, body, _ in self.received:
            if got == path:
                Webhook(SECRET).verify(body.decode(), headers)  # signed like every webhook
                found.append(loads(body))
        return found


@pytest.fixture
async def receiver(serve: Serve) -> Receiver:
    server = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{name}", server.handle)
    server.base = await serve(app)
    return server


Service = tuple[CallService, RecordingSwitch, Reports]


@pytest.fixture
async def service(tmp_path: Path, live_clients: LiveClients) -> AsyncIterator[Service]:
    config = Config()
    config.media = MediaConfig(whisper_dir=str(tmp_path / "media"),
                               recording_dir=str(tmp_path / "recordings"),
                               actions_dir=str(tmp_path / "actions"))
    config.outbound = OutboundConfig(allow_private=True)
    config.webhook.signing_secret = SECRET
    config.calls.caller_id = NUMBER
    switch = RecordingSwitch()
    reports = Reports()
    groups = GroupRegistry("ZA", {"support": parse_group("support", {"agents": [AGENT]}, "ZA",
                                                         lambda name: False)})
    calls = CallService(config, switch, WhisperRenderer(tmp_path / "media"),  # type: ignore[arg-type]
                        reports, groups=groups, outbound=live_clients(config.outbound))
    yield calls, switch, reports
    for call in list(calls.calls.values()):
        if call.task is not None:
            call.task.cancel()


async def until(check: Callable[[], Any], what: str) -> Any:
    async with asyncio.timeout(WAIT_SECONDS):
        while not (found := check()):
            await asyncio.sleep(0.01)
    assert found, what
    return found


def sent(switch: RecordingSwitch, kind: type[Command]) -> list[Any]:
    return [c for c in switch.commands if isinstance(c, kind)]


async def next_command(switch: RecordingSwitch, kind: type[Command], count: int = 1) -> Any:
    await until(lambda: len(sent(switch, kind)) >= count, f"{kind.__name__} #{count}")
    return sent(switch, kind)[count - 1]


def feed(call: ActiveCall, *events: Event) -> None:
    for event in events:
        call.events.put_nowait(event)


def answer_leg_a(call: ActiveCall, at: float = 1.0) -> None:
    feed(call, LegCreated(at, Leg.A, "chan-a"), LegRinging(at, Leg.A),
         LegAnswered(at, Leg.A, "chan-a"))


async def test_an_appointment_call_gathers_a_key_and_its_action_url_decides_what_follows(
        service: Service, receiver: Receiver) -> None:
    calls, switch, reports = service
    confirm = receiver.url("/confirm", {"actions": [{"type": "play", "text": "Thank you"},
                                                    {"type": "hangup", "reason": "confirmed"}]})
    decision = await calls.place(make_request(
        leg_a="011 555 0101", webhook_events=["gathered", "action.completed", "completed"],
        actions=[{"type": "gather", "prompt": "Press 1 to confirm", "action_url": confirm},
                 {"type": "play", "text": "We did not hear you"}]))
    assert isinstance(decision, Placed)
    call = decision.call
    originate = await next_command(switch, OriginateLegA)
    assert (originate.target, originate.caller_id) == (CUSTOMER, NUMBER)
    answer_leg_a(call)
    gather = await next_command(switch, GatherDigits)
    assert gather.prompt_audio and Path(gather.prompt_audio).is_file()
    feed(call, DigitPressed(2.0, gather.action_id, "1"),
         DigitsGathered(2.1, gather.action_id, "1", "max-digits"))
    # The action_url's answer replaced the remaining play.
    play = await next_command(switch, PlayToLegA)
    [posted] = receiver.posted("/confirm")
    assert posted["type"] == "call.gathered"
    assert {k: posted["data"][k] for k in ("call_uuid", "digits", "direction", "from", "to")} == {
        "call_uuid": call.call_id, "digits": "1", "direction": "outbound", "from": NUMBER,
        "to": CUSTOMER}
    feed(call, PlayFinished(3.0, play.action_id, True))
    await next_command(switch, HangupLegs)
    feed(call, LegEnded(3.1, Leg.A, 16, channel="chan-a"))
    result = await asyncio.wait_for(call.wait(), WAIT_SECONDS)
    assert (result["status"], result["digits"], result["direction"]) == ("completed", "1",
                                                                         "outbound")
    assert [(a["type"], a["status"], a["source"]) for a in result["actions"]] == [
        ("gather", "completed", "request"), ("play", "dropped", "request"),
        ("play", "completed", "action_url"), ("hangup", "completed", "action_url")]
    OpenApiDocument().component("CallResult", result)  # as the API document specifies it
    assert reports.events()[0] == "call.gathered"
    # Each action that ran is reported as it ends (the dropped one never ran).
    assert reports.events().count("call.action.completed") == 3


async def test_a_url_that_answers_garbage_fails_the_gather_with_why_and_the_queue_goes_on(
        service: Service, receiver: Receiver) -> None:
    calls, switch, _ = service
    broken = receiver.url("/broken", "<html>", kind="text/html")
    decision = await calls.place(make_request(
        leg_a=CUSTOMER, actions=[{"type": "gather", "action_url": broken},
                                 {"type": "play", "text": "Goodbye"}]))
    assert isinstance(decision, Placed)
    call = decision.call
    answer_leg_a(call)
    gather = await next_command(switch, GatherDigits)
    feed(call, DigitsGathered(2.0, gather.action_id, "5", "max-digits"))
    await next_command(switch, PlayToLegA)  # the caller is never left in silence
    record = call.core.actions[0]  # type: ignore[attr-defined]
    assert record["status"] == "failed" and "not JSON" in record["reason"]


async def test_actions_sent_to_a_live_call_run_after_the_queue_or_replace_it(
        service: Service) -> None:
    calls, switch, _ = service
    decision = await calls.place(make_request(leg_a=CUSTOMER, actions=[]))
    assert isinstance(decision, Placed)
    call = decision.call
    answer_leg_a(call)
    await next_command(switch, WaitForActions)
    queued = await calls.queue_actions(call.call_id, parse_answer(
        {"actions": [{"type": "play", "text": "Hello"}, {"type": "hangup"}]}))
    assert queued is not None and [a.type for a in queued] == ["play", "hangup"]
    play = await next_command(switch, PlayToLegA)
    assert play.action_id == queued[0].id
    # Bad input names the field; nothing is queued.
    with pytest.raises(InvalidRequest) as caught:
        await calls.queue_actions(call.call_id, parse_answer(
            {"actions": [{"type": "pause", "seconds": 1},
                         {"type": "redirect", "url": "ftp://x.example.com/"}]}))
    assert caught.value.details["field"] == "actions[1].url"
    replaced = await calls.queue_actions(call.call_id, parse_answer(
        {"actions": [{"type": "pause", "seconds": 1}]}), replace=True)
    assert replaced is not None
    records = call.core.actions  # type: ignore[attr-defined]
    await until(lambda: len(records) == 3, "the pause queued")
    assert [r["status"] for r in records] == ["running", "dropped", "queued"]
    feed(call, LegEnded(5.0, Leg.A, 16, channel="chan-a"))
    await asyncio.wait_for(call.wait(), WAIT_SECONDS)
    assert await calls.queue_actions(call.call_id, parse_answer(
        {"actions": [{"type": "hangup"}]})) is None  # ended: none taken


async def test_a_call_takes_so_many_actions_and_then_refuses_more_with_why(
        service: Service) -> None:
    calls, _, _ = service
    decision = await calls.place(make_request(leg_a=CUSTOMER, actions=[]))
    assert isinstance(decision, Placed)
    call = decision.call
    answer_leg_a(call)
    fifty = parse_answer({"actions": [{"type": "pause", "seconds": 1}] * MAX_ACTIONS})
    for _ in range(MAX_ACTIONS_PER_CALL // MAX_ACTIONS):
        assert await calls.queue_actions(call.call_id, fifty) is not None
    with pytest.raises(TooManyActions) as caught:
        await calls.queue_actions(call.call_id, parse_answer({"actions": [{"type": "hangup"}]}))
    assert f"at most {MAX_ACTIONS_PER_CALL}" in caught.value.message
    feed(call, LegEnded(5.0, Leg.A, 16, channel="chan-a"))
    await asyncio.wait_for(call.wait(), WAIT_SECONDS)
    assert len(call.core.actions) == MAX_ACTIONS_PER_CALL  # type: ignore[attr-defined]


async def test_a_call_connect_takes_no_actions(service: Service) -> None:
    calls, _, _ = service
    decision = await calls.place(make_request(leg_a=CUSTOMER, leg_b=AGENT, record=False))
    assert isinstance(decision, Placed)
    with pytest.raises(NotALiveCall):
        await calls.queue_actions(decision.call.call_id,
                                  parse_answer({"actions": [{"type": "hangup"}]}))


async def test_an_inbound_connect_shows_the_callers_number_and_dial_whom_is_told_the_inbound_call(
        service: Service, receiver: Receiver) -> None:
    calls, switch, reports = service
    whom = receiver.url("/whom", AGENT, kind="text/plain")
    incoming = IncomingCall("chan-in", CUSTOMER, NUMBER, 0.5)
    claimed: list[str] = []

    async def claim(offer: IncomingCall, call_id: str, sink: Any) -> None:
        claimed.append(call_id)
    switch.claim = claim  # type: ignore[attr-defined]
    call = await calls.start_live(
        make_request(leg_a=CUSTOMER, actions=[
            {"type": "gather", "max_digits": 1},
            {"type": "connect", "to": whom, "caller_id": "caller", "record": False}]),
        inbound=Inbound(incoming, CUSTOMER, NUMBER), source="number")
    assert claimed == [call.call_id]
    assert not sent(switch, OriginateLegA)  # the caller is already there
    feed(call, LegCreated(0.6, Leg.A, "chan-in"), LegRinging(0.6, Leg.A))
    gather = await next_command(switch, GatherDigits)
    feed(call, LegAnswered(1.0, Leg.A, "chan-in"),
         DigitsGathered(2.0, gather.action_id, "2", "max-digits"))
    dial = await next_command(switch, DialLegB)
    # The agent sees the inbound caller's number.
    assert (dial.targets, dial.caller_id) == ((AGENT,), CUSTOMER)
    [(_, _, _, query)] = [r for r in receiver.received if r[0] == "/whom"]
    assert {k: query[k] for k in ("Direction", "CallFrom", "CallTo", "Digits")} == {
        "Direction": "incoming", "CallFrom": CUSTOMER, "CallTo": NUMBER, "Digits": "2"}
    feed(call, LegEnded(3.0, Leg.A, 16, channel="chan-in"))
    result = await asyncio.wait_for(call.wait(), WAIT_SECONDS)
    assert (result["direction"], result["from"], result["to"]) == ("inbound", CUSTOMER, NUMBER)
    assert reports.results[call.call_id]["status"] == "completed"
