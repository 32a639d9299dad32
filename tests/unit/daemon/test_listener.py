"""The daemon's StoreListener on a real SQLite store: every change of a call
saved with its timeline and webhook deliveries, and, while the store refuses
writes (a full disk), the changes kept, merged and written once it takes them
again, with new calls refused meanwhile."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from controller.calls.request import CallRequest
from controller.calls.runner import ActiveCall
from controller.config import Config
from controller.core.commands import CallEnded, Command, Report
from controller.core.events import (
    ActionsQueued,
    DigitsGathered,
    Event,
    LegAnswered,
    LegCreated,
    LegEnded,
    LegHungUp,
    LegRinging,
)
from controller.core.live import LiveCall, core_from_snapshot
from controller.core.machine import CallConnect
from controller.core.outcomes import Leg
from controller.core.plan import Attempt, CallPlan
from controller.daemon import listener as listener_module
from controller.daemon.listener import DuplicateRequest, StoreListener
from controller.daemon.metrics import Metrics
from controller.outbound import OutboundConfig
from controller.store import (
    DeliveryState,
    IdempotencyKey,
    StoredCall,
    StoreError,
    TimelineEntry,
    WebhookDelivery,
)
from controller.store.sqlite import SqliteStore
from controller.webhooks.outbox import Outbox
from tests.openapi_document import OpenApiDocument
from tests.unit.core.live_helpers import (
    CALLER,
    CUSTOMER,
    INBOUND_PLAN,
    NUMBER,
    OUTBOUND_PLAN,
    gather,
    pause,
)

T0 = 1_795_260_000.0
URL = "https://hooks.example.com/calls?token=t"
ALL_EVENTS = ("initiated", "ringing", "answered", "bridged", "completed")

RING_A: list[Event] = [LegCreated(at=T0 + 0.1, leg=Leg.A), LegRinging(at=T0 + 0.2, leg=Leg.A)]
ANSWER_A: list[Event] = [LegAnswered(at=T0 + 5.0, leg=Leg.A)]
RING_B: list[Event] = [LegCreated(at=T0 + 5.1, leg=Leg.B), LegRinging(at=T0 + 5.2, leg=Leg.B)]
ANSWER_B: list[Event] = [LegAnswered(at=T0 + 9.0, leg=Leg.B)]
# Leg A hangs up (the call is ending once its channel is gone), then leg B's channel ends.
HANG_UP: list[Event] = [LegHungUp(at=T0 + 20.0, leg=Leg.A, cause=16),
                        LegEnded(at=T0 + 20.1, leg=Leg.A, cause=16),
                        LegEnded(at=T0 + 20.2, leg=Leg.B, cause=16)]

# (from, to) of the transitions and (event, leg) of the webhooks of a call
# answered on both legs and hung up by leg A.
TRANSITIONS = [("new", "dialing-a"), ("dialing-a", "ringing-a"), ("ringing-a", "dialing-b"),
               ("dialing-b", "ringing-b"), ("ringing-b", "bridged"), ("bridged", "ending"),
               ("ending", "ended")]
WEBHOOKS = [("call.initiated", "a"), ("call.ringing", "a"), ("call.answered", "a"), ("call.ringing", "b"),
            ("call.answered", "b"), ("call.bridged", "b"), ("call.completed", None)]


def new_call(call_id: str, *, webhook_events: tuple[str, ...] = ALL_EVENTS, webhook_url: str | None = URL,
             key: str | None = None) -> ActiveCall:
    """The one place requests and calls are built: the request path may change their shape."""
    request = CallRequest(leg_a="+27115550101", leg_b="+27115550202", webhook_url=webhook_url,
                          webhook_events=list(webhook_events), metadata={"crm": "42"})
    plan = CallPlan(call_id=call_id, leg_a="PJSIP/a", leg_b="PJSIP/b", ring_timeout=30, time_limit=60,
                    first_attempt=Attempt(("PJSIP/b",), ring_timeout=30))
    return ActiveCall(CallConnect(plan, created_at=T0), request,
                      idempotency_key=IdempotencyKey(key) if key else None, whisper=None,
                      recording_path=None)


class Disk(SqliteStore):
    """The real store, on a disk the test can fill: while ``full``, saving a
    call fails as SQLite fails on a full disk. Only save_call is refused, so
    a new call turned away is turned away by the listener, not by the file."""

    full = False
    saves = 0  # save_call transactions committed

    async def save_call(self, call: StoredCall, timeline: list[TimelineEntry],
                        deliveries: list[WebhookDelivery]) -> None:
        if self.full:
            exc = sqlite3.OperationalError("database or disk is full")
            exc.sqlite_errorcode = sqlite3.SQLITE_FULL
            exc.sqlite_errorname = "SQLITE_FULL"
            raise self._error("saving a call", exc)
        await super().save_call(call, timeline, deliveries)
        self.saves += 1


class HandedOver(Outbox):
    """An outbox that is never run: it keeps the ids of the deliveries it is
    handed once they are written, one list per handover."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handed: list[list[str]] = []

    def enqueued(self, deliveries: Iterable[WebhookDelivery]) -> None:
        self.handed.append([d.event_id for d in deliveries])


@pytest.fixture
async def disk(tmp_path: Path) -> AsyncIterator[Disk]:
    store = Disk(tmp_path / "state" / "callconnect.sqlite")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def outbox(disk: Disk) -> AsyncIterator[HandedOver]:
    outbox = HandedOver(disk, None, outbound=OutboundConfig())
    yield outbox
    await outbox.stop()


@pytest.fixture
async def listener(disk: Disk, outbox: HandedOver) -> AsyncIterator[StoreListener]:
    listener = StoreListener(Config(), disk, outbox, Metrics("asterisk"))
    yield listener
    await listener.flush()  # stops its retries


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listener_module, "UNSAVED_RETRY_SECONDS", 0.01)


async def tell(listener: StoreListener, call: ActiveCall, commands: list[Command]) -> None:
    """What CallService does after each step of the core: the new transitions
    first, then the end with its result."""
    new = call.core.timeline[call.logged:]
    call.logged = len(call.core.timeline)
    if new:
        await listener.call_changed(call, new)
    for command in commands:
        if isinstance(command, CallEnded):
            await listener.call_ended(call, dict(command.result))


async def start(listener: StoreListener, call: ActiveCall) -> None:
    await listener.call_created(call)
    await tell(listener, call, call.core.start())


async def send(listener: StoreListener, call: ActiveCall, *steps: list[Event]) -> None:
    for step in steps:
        for event in step:
            await tell(listener, call, call.core.handle(event))


async def transitions(store: SqliteStore, call_id: str) -> list[tuple[str, str]]:
    return [(entry.data["from"], entry.data["to"]) for entry in await store.timeline(call_id)]


async def webhooks(store: SqliteStore, call_id: str) -> list[tuple[str, str | None]]:
    return [(d.event_type, d.payload["data"].get("leg")) for d in await store.deliveries(call_id)]


async def caught_up(listener: StoreListener) -> None:
    async with asyncio.timeout(5):
        while listener.unsaved:
            await asyncio.sleep(0.01)


def active_calls(listener: StoreListener) -> float | None:
    return listener.metrics.registry.get_sample_value("callconnect_active_calls")


async def test_a_call_is_saved_at_every_change_with_its_timeline_and_webhooks(
        listener: StoreListener, disk: Disk, outbox: HandedOver) -> None:
    call = new_call("c1")
    await listener.call_created(call)
    stored = await disk.get_call("c1")
    assert stored is not None and stored.state == "new" and stored.request["metadata"] == {"crm": "42"}
    assert active_calls(listener) == 1

    await tell(listener, call, call.core.start())
    await send(listener, call, RING_A, ANSWER_A, RING_B, ANSWER_B)
    stored = await disk.get_call("c1")
    assert stored is not None and stored.state == "bridged" and stored.result is None
    assert await transitions(disk, "c1") == TRANSITIONS[:5]
    assert await webhooks(disk, "c1") == WEBHOOKS[:6]

    await send(listener, call, HANG_UP)
    stored = await disk.get_call("c1")
    assert stored is not None and stored.state == "ended" and stored.status == "completed"
    assert stored.result is not None and stored.result["hangup_by"] == "leg_a"
    assert await transitions(disk, "c1") == TRANSITIONS
    deliveries = await disk.deliveries("c1")
    assert [(d.event_type, d.payload["data"].get("leg")) for d in deliveries] == WEBHOOKS
    assert {d.url for d in deliveries} == {URL}
    assert {d.state for d in deliveries} == {DeliveryState.PENDING}
    assert len({d.event_id for d in deliveries}) == len(deliveries)
    assert deliveries[-1].payload["data"] == stored.result
    assert deliveries[1].payload["data"]["metadata"] == {"crm": "42"}
    document = OpenApiDocument()  # status callbacks as the API document specifies them
    for delivery in deliveries[:-1]:
        document.webhook(delivery.payload)
    # Handed every delivery once written, after each write that enqueued some,
    # none of the others (ending).
    assert len(outbox.handed) == 6
    assert [event_id for handed in outbox.handed for event_id in handed] == \
        [d.event_id for d in deliveries]
    assert active_calls(listener) == 0
    assert listener.metrics.registry.get_sample_value(
        "callconnect_calls_total", {"status": "completed"}) == 1


async def test_the_end_is_saved_once_with_its_result(listener: StoreListener, disk: Disk) -> None:
    call = new_call("c1")
    await start(listener, call)
    await send(listener, call, RING_A, ANSWER_A, RING_B, ANSWER_B, HANG_UP[:2])
    saves = disk.saves

    # Told of the last transition before the result is known: nothing is written yet.
    [ended] = [c for c in call.core.handle(HANG_UP[2]) if isinstance(c, CallEnded)]
    await listener.call_changed(call, call.core.timeline[call.logged:])
    assert disk.saves == saves
    stored = await disk.get_call("c1")
    assert stored is not None and stored.state == "ending"

    await listener.call_ended(call, dict(ended.result))
    assert disk.saves == saves + 1
    stored = await disk.get_call("c1")
    assert stored is not None and stored.state == "ended" and stored.result is not None
    assert await transitions(disk, "c1") == TRANSITIONS
    assert await webhooks(disk, "c1") == WEBHOOKS


@pytest.mark.parametrize(("events", "request_url", "config_url", "expected"), [
    (("completed",), URL, "", [("call.completed", None)]),
    # "completed" is the result: sent even when not asked for.
    (("ringing", "bridged"), URL, "",
     [("call.ringing", "a"), ("call.ringing", "b"), ("call.bridged", "b"), ("call.completed", None)]),
    (("answered",), URL, "", [("call.answered", "a"), ("call.answered", "b"), ("call.completed", None)]),
    (("initiated",), None, "https://config.example.com/hook",
     [("call.initiated", "a"), ("call.completed", None)]),
    (ALL_EVENTS, None, "", []),
])
async def test_the_webhooks_are_the_events_asked_for(
        disk: Disk, outbox: HandedOver, events: tuple[str, ...], request_url: str | None, config_url: str,
        expected: list[tuple[str, str | None]]) -> None:
    config = Config()
    config.webhook.url = config_url
    listener = StoreListener(config, disk, outbox, Metrics("asterisk"))
    call = new_call("c1", webhook_events=events, webhook_url=request_url)
    await start(listener, call)
    await send(listener, call, RING_A, ANSWER_A, RING_B, ANSWER_B, HANG_UP)
    assert await transitions(disk, "c1") == TRANSITIONS
    assert await webhooks(disk, "c1") == expected
    assert {d.url for d in await disk.deliveries("c1")} <= {request_url or config_url}


@pytest.mark.usefixtures("fast_retries")
async def test_refused_changes_wait_merged_and_are_written_once_the_store_takes_them(
        listener: StoreListener, disk: Disk, outbox: HandedOver) -> None:
    call = new_call("c1")
    await start(listener, call)
    await send(listener, call, RING_A)
    handovers = len(outbox.handed)

    disk.full = True
    await send(listener, call, ANSWER_A, RING_B)
    waiting = listener.unsaved["c1"]
    assert "disk is full" in waiting.error.message
    assert waiting.record.state == "ringing-b"
    assert [(e.data["from"], e.data["to"]) for e in waiting.timeline] == TRANSITIONS[2:4]
    assert [d.event_type for d in waiting.deliveries] == ["call.answered", "call.ringing"]
    # The store still has the call as it was; nothing unwritten is announced to the outbox.
    stored = await disk.get_call("c1")
    assert stored is not None and stored.state == "ringing-a"
    assert await transitions(disk, "c1") == TRANSITIONS[:2]
    assert len(outbox.handed) == handovers
    await asyncio.sleep(0.05)  # retries go on failing while the disk is full
    assert listener.unsaved["c1"].record.state == "ringing-b"

    disk.full = False
    await caught_up(listener)
    stored = await disk.get_call("c1")
    assert stored is not None and stored.state == "ringing-b"
    assert await transitions(disk, "c1") == TRANSITIONS[:4]
    assert await webhooks(disk, "c1") == WEBHOOKS[:4]
    assert len(outbox.handed) == handovers + 1

    await send(listener, call, ANSWER_B, HANG_UP)
    assert await transitions(disk, "c1") == TRANSITIONS
    assert await webhooks(disk, "c1") == WEBHOOKS


async def test_a_change_after_the_store_recovers_brings_the_waiting_ones_with_it(
        listener: StoreListener, disk: Disk, outbox: HandedOver) -> None:
    # Retries are a second apart: the next change reaches the store first.
    call = new_call("c1")
    await start(listener, call)
    await send(listener, call, RING_A, ANSWER_A)
    disk.full = True
    await send(listener, call, RING_B, ANSWER_B)
    assert listener.unsaved["c1"].record.state == "bridged"

    disk.full = False
    saves = disk.saves
    await send(listener, call, HANG_UP[:2])
    assert listener.unsaved == {}
    assert disk.saves == saves + 1, "the waiting changes and the new one in one transaction"
    stored = await disk.get_call("c1")
    assert stored is not None and stored.state == "ending"
    assert await transitions(disk, "c1") == TRANSITIONS[:6]
    assert await webhooks(disk, "c1") == WEBHOOKS[:6]

    await send(listener, call, HANG_UP[2:])
    assert await transitions(disk, "c1") == TRANSITIONS
    assert await webhooks(disk, "c1") == WEBHOOKS


async def test_a_call_that_ends_while_the_store_refuses_keeps_its_end(
        listener: StoreListener, disk: Disk) -> None:
    call = new_call("c1")
    await start(listener, call)
    await send(listener, call, RING_A, ANSWER_A, RING_B, ANSWER_B)
    disk.full = True
    await send(listener, call, HANG_UP)
    waiting = listener.unsaved["c1"]
    assert waiting.record.state == "ended" and waiting.record.result is not None
    assert [d.event_type for d in waiting.deliveries] == ["call.completed"]
    stored = await disk.get_call("c1")
    assert stored is not None and stored.state == "bridged"

    # At shutdown, one last try: the store takes them now.
    disk.full = False
    await listener.flush()
    assert listener.unsaved == {}
    stored = await disk.get_call("c1")
    assert stored is not None and stored.state == "ended" and stored.result == waiting.record.result
    assert await transitions(disk, "c1") == TRANSITIONS
    assert await webhooks(disk, "c1") == WEBHOOKS


@pytest.mark.usefixtures("fast_retries")
async def test_new_calls_are_refused_while_changes_wait(listener: StoreListener, disk: Disk) -> None:
    first = new_call("c1")
    await start(listener, first)
    disk.full = True
    await send(listener, first, RING_A)
    assert "c1" in listener.unsaved

    with pytest.raises(StoreError, match="disk is full") as refused:
        await listener.call_created(new_call("c2"))
    assert refused.value is listener.unsaved["c1"].error
    assert await disk.get_call("c2") is None
    assert active_calls(listener) == 1

    disk.full = False
    await caught_up(listener)
    await start(listener, new_call("c2"))
    stored = await disk.get_call("c2")
    assert stored is not None and stored.state == "dialing-a"
    assert active_calls(listener) == 2


async def test_a_taken_idempotency_key_is_a_duplicate_request(listener: StoreListener, disk: Disk) -> None:
    first = new_call("c1", key="order-42")
    await start(listener, first)

    with pytest.raises(DuplicateRequest) as duplicate:
        await listener.call_created(new_call("c2", key="order-42"))
    assert duplicate.value.existing.call_id == "c1"
    assert duplicate.value.existing.request["idempotency_key"] == "order-42"
    assert await disk.get_call("c2") is None
    assert active_calls(listener) == 1
    # Without a key, or with another one, calls are new.
    await start(listener, new_call("c3"))
    await start(listener, new_call("c4", key="order-43"))
    assert active_calls(listener) == 3



# ---------------------------------------------------------------- live calls


async def tell_live(listener: StoreListener, call: ActiveCall, commands: list[Command]) -> None:
    """``tell``, with the status callbacks a live call's core reports, in
    the order of the commands (as the runner carries them out)."""
    new = call.core.timeline[call.logged:]
    call.logged = len(call.core.timeline)
    if new:
        await listener.call_changed(call, new)
    for command in commands:
        if isinstance(command, Report):
            await listener.call_reported(call, command.event, command.data)
        elif isinstance(command, CallEnded):
            await listener.call_ended(call, dict(command.result))


async def test_a_single_leg_calls_answer_gather_and_actions_are_sent_once_each_and_it_restores(
        listener: StoreListener, disk: Disk) -> None:
    request = CallRequest(leg_a=CUSTOMER, actions=[], webhook_url=URL, metadata={"crm": "42"},
                          webhook_events=["answered", "gathered", "action.completed", "completed"])
    call = ActiveCall(LiveCall.outbound(OUTBOUND_PLAN, NUMBER, 30, created_at=T0), request,
                      idempotency_key=None, whisper=None, recording_path=None)
    await listener.call_created(call)
    await tell_live(listener, call, call.core.start())
    ask = gather("g1")
    for event in [*RING_A, ActionsQueued(T0 + 0.3, (ask, pause("p1")), source="request"),
                  LegAnswered(T0 + 1.0, Leg.A, "chan-a"),
                  DigitsGathered(T0 + 2.0, "g1", "1", "max-digits")]:
        await tell_live(listener, call, call.core.handle(event))
    stored = await disk.get_call(call.call_id)
    assert stored is not None and stored.state == "pausing"
    # Restored from the store, it is the same live call, mid-pause.
    restored = core_from_snapshot(stored.snapshot)
    assert isinstance(restored, LiveCall) and restored.digits == "1"
    assert restored.running_action is not None and restored.running_action.id == "p1"
    await tell_live(listener, call, call.core.handle(LegEnded(T0 + 3.0, Leg.A, 16)))
    sent = [(d.event_type, d.payload["data"].get("leg") or d.payload["data"].get("id"))
            for d in await disk.deliveries(call.call_id)]
    assert sent == [("call.answered", "a"), ("call.gathered", None),
                    ("call.action.completed", "g1"), ("call.action.completed", "p1"),
                    ("call.completed", None)]
    [gathered] = [d.payload["data"] for d in await disk.deliveries(call.call_id)
                  if d.event_type == "call.gathered"]
    assert (gathered["digits"], gathered["metadata"]) == ("1", {"crm": "42"})
    [completed] = [d.payload["data"] for d in await disk.deliveries(call.call_id)
                   if d.event_type == "call.completed"]
    assert (completed["direction"], completed["from"], completed["to"]) == (
        "outbound", NUMBER, CUSTOMER)
    assert completed["digits"] == "1" and [a["id"] for a in completed["actions"]] == ["g1", "p1"]
    document = OpenApiDocument()  # status callbacks as the API document specifies them
    for delivery in (await disk.deliveries(call.call_id))[:-1]:
        document.webhook(delivery.payload)


async def test_an_inbound_caller_gets_no_answered_callback_for_a_step(listener: StoreListener,
                                                                      disk: Disk) -> None:
    request = CallRequest(leg_a=CALLER, actions=[], webhook_url=URL, webhook_events=["answered"])
    call = ActiveCall(LiveCall.inbound(INBOUND_PLAN, CALLER, NUMBER, 30, created_at=T0), request,
                      idempotency_key=None, whisper=None, recording_path=None)
    await listener.call_created(call)
    await tell_live(listener, call, call.core.start())
    for event in [LegCreated(T0 + 0.1, Leg.A, "chan-a"), LegRinging(T0 + 0.1, Leg.A),
                  ActionsQueued(T0 + 0.2, (pause("p1"),), source="number")]:
        await tell_live(listener, call, call.core.handle(event))
    assert await disk.deliveries(call.call_id) == []
