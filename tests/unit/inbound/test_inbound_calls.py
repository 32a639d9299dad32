"""A call arriving for the controller, from the backend's on_incoming to its
first actions: the numbers in a real SQLite store, the call started by the
real call service (the core's LiveCall, the real preparer and TTS), and
incoming_url a real HTTP server on loopback asked by the real action
fetcher. The switch is one that records what it was told (claims,
refusals, commands), as the other service tests use; the backends' own
claim and refuse are tested against their switches."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from controller.backends.base import EventSink, IncomingCall
from controller.calls.groups import GroupRegistry
from controller.calls.runner import ActiveCall
from controller.calls.service import CallService
from controller.config import Config, InboundConfig, MediaConfig
from controller.core.commands import (
    Command,
    DialLegB,
    HangupLegs,
    OriginateLegA,
    PlayToLegA,
    WaitForActions,
)
from controller.core.live import LiveCall
from controller.daemon.listener import request_as_dict, request_from_dict
from controller.inbound.numbers import Number, NumberSettings
from controller.inbound.registry import NumberRegistry
from controller.inbound.service import OVERLOADED_CAUSE, InboundCall, InboundCalls, caller_of
from controller.jsonio import loads
from controller.outbound import OutboundConfig
from controller.routing.spec import parse_group
from controller.store.sqlite import SqliteStore
from controller.tts import WhisperRenderer
from tests.conftest import LiveClients, Serve
from tests.openapi_document import OpenApiDocument
from tests.unit.calls.test_live_calls import Reports
from tests.unit.conftest import RecordingSwitch

SECRET = "whsec_" + base64.b64encode(b"n" * 32).decode()
NUMBER, AGENT = "+27115550900", "+27115550202"
CALLER = IncomingCall("chan-1", "0115550101", "27115550900", 1000.0)
WAIT_SECONDS = 10.0  # a bound on every wait: each expected step comes far sooner
C = TypeVar("C", bound=Command)


class SwitchAtTheDoor(RecordingSwitch):
    """Records which incoming calls it was told to claim or refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.claimed: list[tuple[IncomingCall, str]] = []
        self.refused: list[tuple[IncomingCall, str | None, int]] = []

    async def claim(self, incoming: IncomingCall, call_id: str, sink: EventSink) -> None:
        self.claimed.append((incoming, call_id))

    async def refuse(self, incoming: IncomingCall, audio: str | None, cause: int) -> None:
        self.refused.append((incoming, audio, cause))


@dataclass
class Door:
    inbound: InboundCalls
    switch: SwitchAtTheDoor
    calls: CallService
    numbers: NumberRegistry
    config: Config
    reports: Reports
    refusal: list[str | None] = field(default_factory=lambda: [None])

    async def put(self, **settings: Any) -> None:
        await self.numbers.put(NUMBER, NumberSettings.model_validate(settings))

    def call(self) -> ActiveCall:
        [(_, call_id)] = self.switch.claimed
        return self.calls.calls[call_id]

    async def first_actions(self) -> list[dict[str, Any]]:
        """The records of the actions first queued on the one call taken."""
        call = self.call()
        async with asyncio.timeout(WAIT_SECONDS):
            while not call.core.actions and not any(
                    isinstance(c, WaitForActions) for c in self.switch.commands):
                await asyncio.sleep(0.01)
        return list(call.core.actions)

    async def command(self, kind: type[C]) -> C:
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                found = [c for c in self.switch.commands if isinstance(c, kind)]
                if found:
                    return found[0]
                await asyncio.sleep(0.01)


@pytest.fixture
async def door(tmp_path: Path, store: SqliteStore, live_clients: LiveClients) -> Door:
    config = Config(outbound=OutboundConfig(allow_private=True))
    config.media = MediaConfig(whisper_dir=str(tmp_path / "media"),
                               recording_dir=str(tmp_path / "recordings"))
    config.webhook.signing_secret = SECRET
    renderer = WhisperRenderer(tmp_path / "media")
    groups = GroupRegistry("ZA", {"sales": parse_group("sales", {"agents": [AGENT]}, "ZA",
                                                       lambda name: False)})
    numbers = NumberRegistry("ZA", config.outbound, {}, store)
    switch = SwitchAtTheDoor()
    reports = Reports()
    calls = CallService(config, switch, renderer, reports, groups=groups,
                        outbound=live_clients(config.outbound))
    refusal: list[str | None] = [None]
    inbound = InboundCalls(config, numbers, switch, renderer, calls.live.preparer, calls,
                           calls.live.fetcher, admit=lambda: refusal[0])
    inbound.attach()
    return Door(inbound, switch, calls, numbers, config, reports, refusal)


Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]
SHUTTING_DOWN = web.AppKey("shutting_down", asyncio.Event)


@dataclass
class IncomingUrl:
    url: str
    received: list[tuple[dict[str, str], bytes]]


async def incoming_url(serve: Serve, answer: Answer) -> IncomingUrl:
    received: list[tuple[dict[str, str], bytes]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        received.append(({k.lower(): v for k, v in request.headers.items()}, await request.read()))
        return await answer(request)

    async def closing(app: web.Application) -> None:
        app[SHUTTING_DOWN].set()  # a slow answer gives up: the test is over

    app = web.Application()
    app[SHUTTING_DOWN] = asyncio.Event()
    app.on_shutdown.append(closing)
    app.router.add_post("/incoming", handle)
    return IncomingUrl(f"{await serve(app)}/incoming?token=crm-secret", received)


def answering(status: int, body: Any = None, delay: float = 0.0) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        if delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(request.app[SHUTTING_DOWN].wait(), delay)
        if body is None:
            return web.Response(status=status)
        return web.json_response(body, status=status)
    return answer


# ------------------------------------------------------------ refusals


async def test_an_unknown_number_hears_the_message_and_is_hung_up_unallocated(
        door: Door, tmp_path: Path) -> None:
    assert door.switch.on_incoming is not None
    await door.switch.on_incoming(CALLER)
    [(incoming, audio, cause)] = door.switch.refused
    assert (incoming, cause) == (CALLER, 1)
    assert audio is not None and Path(audio).is_relative_to(tmp_path / "media")
    with wave.open(audio) as heard:  # the message, spoken
        assert heard.getnframes() / heard.getframerate() > 1.0
    assert door.calls.calls == {} and door.switch.claimed == []


async def test_an_unknown_number_may_be_rejected_unanswered_with_its_cause(door: Door) -> None:
    door.config.inbound = InboundConfig(unknown_number="reject", unknown_number_cause=21)
    await door.put(actions=[{"type": "hangup"}])
    await door.inbound.on_incoming(IncomingCall("chan-2", "+27115550101", "+27115550999", 1.0))
    await door.inbound.on_incoming(IncomingCall("chan-3", "+27115550101", "not a number", 1.0))
    assert [(i.channel, audio, cause) for i, audio, cause in door.switch.refused] == [
        ("chan-2", None, 21), ("chan-3", None, 21)]
    assert door.calls.calls == {}


async def test_a_call_over_the_daemons_limits_is_refused_not_left_ringing(door: Door) -> None:
    await door.put(actions=[{"type": "hangup"}])
    door.refusal[0] = "over api.max_active_calls"
    await door.inbound.on_incoming(CALLER)
    assert door.switch.refused == [(CALLER, None, OVERLOADED_CAUSE)]
    assert door.calls.calls == {} and door.switch.claimed == []


# ------------------------------------------------------------ the number's actions


async def test_a_connect_applet_number_puts_the_caller_through_showing_their_number(
        door: Door) -> None:
    await door.put(actions=[{"type": "connect", "to": "group:sales", "caller_id": "caller",
                             "whisper": "Incoming sales call"}], idle_timeout=20)
    await door.inbound.on_incoming(CALLER)
    call = door.call()
    core = call.core
    assert isinstance(core, LiveCall)
    assert (core.direction, core.from_, core.to, core.idle_timeout) == (
        "inbound", "+27115550101", NUMBER, 20)
    assert door.switch.claimed == [(CALLER, call.call_id)]
    [connect] = await door.first_actions()
    assert (connect["type"], connect["source"]) == ("connect", "number")
    dial = await door.command(DialLegB)
    # The agent is rung showing the caller's own number; nobody originates the caller.
    assert (dial.targets, dial.caller_id) == ((AGENT,), "+27115550101")
    assert not any(isinstance(c, OriginateLegA) for c in door.switch.commands)


async def test_a_number_whose_actions_no_longer_run_hangs_up_saying_why(door: Door) -> None:
    await door.put(actions=[{"type": "connect", "to": "group:support"}])
    await door.inbound.on_incoming(CALLER)
    [hangup] = await door.first_actions()
    assert hangup["type"] == "hangup"
    assert "actions[0].to" in hangup["spec"]["reason"] and "support" in hangup["spec"]["reason"]
    await door.command(HangupLegs)


# ------------------------------------------------------------ incoming_url


async def test_incoming_url_is_posted_the_call_signed_and_its_actions_run(
        door: Door, serve: Serve) -> None:
    url = await incoming_url(serve, answering(200, {"actions": [
        {"type": "play", "text": "Welcome to support"}, {"type": "hangup"}]}))
    await door.put(incoming_url=url.url, metadata={"line": "support"})
    await door.inbound.on_incoming(CALLER)
    call_id = door.call().call_id
    records = await door.first_actions()
    assert [(r["type"], r["source"]) for r in records] == [
        ("play", "incoming_url"), ("hangup", "incoming_url")]
    play = await door.command(PlayToLegA)
    assert play.audio and Path(play.audio[0]).is_file()  # the text, rendered
    [(headers, body)] = url.received
    Webhook(SECRET).verify(body, headers)
    sent = loads(body)
    assert sent["type"] == "call.incoming"
    assert sent["data"] == {"call_uuid": call_id, "from": "+27115550101", "to": NUMBER,
                            "direction": "inbound", "at": 1000.0, "metadata": {"line": "support"}}
    OpenApiDocument().webhook(sent)
    # The same news goes to the number's webhook_url as a status callback
    # (when its webhook_events name "incoming"): the listener adds the metadata.
    assert door.reports.reported[0] == ("call.incoming", {
        "call_uuid": call_id, "from": "+27115550101", "to": NUMBER, "direction": "inbound",
        "at": 1000.0})


async def test_a_204_leaves_the_call_waiting_for_actions_with_ringback(
        door: Door, serve: Serve) -> None:
    url = await incoming_url(serve, answering(204))
    await door.put(incoming_url=url.url, fallback_actions=[{"type": "hangup"}], idle_timeout=40)
    await door.inbound.on_incoming(CALLER)
    assert await door.first_actions() == []
    wait = await door.command(WaitForActions)
    assert (wait.seconds, wait.ringback) == (40, True)
    assert door.call().core.incoming_error is None


@pytest.mark.parametrize(("answer", "why"), [
    (answering(500), "HTTP 500"),
    (answering(200, {"next": "menu"}), "actions"),
    (answering(200, {"actions": [{"type": "gather", "max_digits": 99}]}), "actions[0].max_digits"),
    (answering(200, {"actions": [{"type": "connect", "to": "group:nobody"}]}), "nobody"),
    (answering(200, {"actions": [{"type": "hangup"}]}, delay=3.0), "within 0.5 s"),
])
async def test_a_failing_incoming_url_runs_the_fallback_and_the_call_says_why(
        door: Door, serve: Serve, answer: Answer, why: str) -> None:
    url = await incoming_url(serve, answer)
    await door.put(incoming_url=url.url, incoming_timeout=0.5,
                   fallback_actions=[{"type": "connect", "to": AGENT}])
    await door.inbound.on_incoming(CALLER)
    [connect] = await door.first_actions()
    assert (connect["type"], connect["source"]) == ("connect", "fallback")
    reason = door.call().core.incoming_error
    assert reason is not None and why in reason
    assert "crm-secret" not in reason  # the URL's query holds its token
    assert (await door.command(DialLegB)).targets == (AGENT,)


async def test_without_fallback_actions_a_failing_url_hangs_up_with_the_reason(
        door: Door, serve: Serve) -> None:
    url = await incoming_url(serve, answering(503))
    await door.put(incoming_url=url.url)
    await door.inbound.on_incoming(CALLER)
    [hangup] = await door.first_actions()
    assert hangup["type"] == "hangup" and "incoming_url failed" in hangup["spec"]["reason"]
    assert "HTTP 503" in hangup["spec"]["reason"]


async def test_stop_cancels_the_urls_still_being_asked(door: Door, serve: Serve) -> None:
    url = await incoming_url(serve, answering(200, {"actions": [{"type": "hangup"}]}, delay=30))
    await door.put(incoming_url=url.url, incoming_timeout=30.0)
    await door.inbound.on_incoming(CALLER)
    async with asyncio.timeout(WAIT_SECONDS):
        while not url.received:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(door.inbound.stop(), 5)
    assert door.call().core.actions == []


# ------------------------------------------------------------ the caller


@pytest.mark.parametrize(("given", "caller"), [
    ("0115550101", "+27115550101"),
    ("+27115550101", "+27115550101"),
    ("sip:Alice@PBX.example.com", "sip:Alice@pbx.example.com"),
    ("sip:alice@pbx;transport=tcp", "anonymous"),
    ("2001", "2001"),
    ("", "anonymous"),
    ("Anonymous", "anonymous"),
    ("\u202e1234", "anonymous"),
    ("1" * 300, "anonymous"),
])
def test_the_caller_is_normalised_and_never_trusted(given: str, caller: str) -> None:
    assert caller_of(given, "ZA") == caller


@pytest.mark.parametrize("caller", ["+27115550101", "anonymous", "sip:desk@pbx.example.com"])
def test_an_inbound_calls_request_reads_back_from_the_store(caller: str) -> None:
    """A daemon restarted while an inbound call runs reads the stored request
    back as any call's (the lab showed the restart failing on it)."""
    settings = NumberSettings.model_validate({"webhook_url": "http://127.0.0.1:9/hook",
                                              "webhook_events": ["completed"],
                                              "metadata": {"line": "sales"}})
    request = InboundCall("call-1", CALLER, caller, Number(NUMBER, settings)).request()
    kept = request_as_dict(request, None)
    assert request_from_dict(kept).model_dump() == request.model_dump()
