"""The daemon restarted over a store a previous run left open calls in: a real
process against the Event Socket peer, reporting to a real webhook receiver."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.backends.freeswitch.ids import leg_uuid
from controller.core.outcomes import Leg
from tests.conftest import StartReceiver, WebhookReceiver
from tests.lab.conftest import DaemonProcess, api, log_events, wait_for_state
from tests.openapi_document import OpenApiDocument

from .conftest import channels_gone
from .peer import Caller as PeerCaller
from .peer import Channel, EslPeer
from .test_esl_daemon import freeswitch_env


async def place(client: httpx.AsyncClient, receiver: WebhookReceiver, time_limit: int) -> str:
    placed = await client.post("/v1/calls", json={
        "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": time_limit,
        "webhook_url": receiver.url, "webhook_events": ["completed"],
        "metadata": {"crm": "lead-7"}})
    assert placed.status_code == 202, placed.text
    return str(placed.json()["call_uuid"])


async def completions(receiver: WebhookReceiver, count: int) -> dict[str, dict[str, Any]]:
    """The first ``count`` completion webhooks' data, by call id."""
    async with asyncio.timeout(30):
        while True:
            done = [body["data"] for body in receiver.bodies if body["type"] == "call.completed"]
            if len(done) >= count:
                return {data["call_uuid"]: data for data in done}
            receiver.arrived.clear()
            await receiver.arrived.wait()


def older_inbound_request(row: dict[str, Any]) -> dict[str, Any]:
    """As an older version kept an inbound call's request: neither leg_b nor
    actions, which today's request model refuses (the lab showed it)."""
    return {**row, "request": {**row["request"], "leg_b": None, "actions": None}}


def snapshot_without_plan(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "snapshot": {k: v for k, v in row["snapshot"].items() if k != "plan"}}


@pytest.mark.parametrize(("damage", "problem", "legs_known"), [
    (older_inbound_request, "its request no longer validates: actions: Value error, give leg_b",
     True),
    (snapshot_without_plan, "its snapshot cannot be read: KeyError: 'plan'", False),
])
async def test_a_call_the_store_cannot_read_back_is_closed_failed_and_the_others_go_on(
        peer: EslPeer, tmp_path: Path, webhook_receiver: StartReceiver,
        damage: Callable[[dict[str, Any]], dict[str, Any]], problem: str,
        legs_known: bool) -> None:
    receiver = await webhook_receiver()
    store = tmp_path / "store.sqlite3"
    env = freeswitch_env(peer, tmp_path)
    first = DaemonProcess(store, tmp_path / "first.log", env)
    first.start()
    try:
        await first.ready()
        async with api(first) as client:
            # The older call comes first when the store is read back.
            unreadable = await place(client, receiver, time_limit=300)
            readable = await place(client, receiver, time_limit=3)
            for call_id in (unreadable, readable):
                await wait_for_state(client, call_id, "bridged", timeout=15)
        first.signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.stop()
    with sqlite3.connect(store) as db:
        request, snapshot = db.execute("SELECT request, snapshot FROM calls WHERE call_id = ?",
                                       (unreadable,)).fetchone()
        row = damage({"request": json.loads(request), "snapshot": json.loads(snapshot)})
        db.execute("UPDATE calls SET request = ?, snapshot = ? WHERE call_id = ?",
                   (json.dumps(row["request"]), json.dumps(row["snapshot"]), unreadable))
    up = peer.channel_ids()
    for call_id in (unreadable, readable):  # both calls are still up on the switch
        assert {leg_uuid(call_id, Leg.A), leg_uuid(call_id, Leg.B)} <= set(up), up

    second = DaemonProcess(store, tmp_path / "second.log", env)
    second.start()
    try:
        await second.ready()
        done = await completions(receiver, 2)
        assert second.process is not None and second.process.poll() is None, \
            second.log.read_text()[-2000:]
        async with api(second) as client:
            closed = await client.get(f"/v1/calls/{unreadable}")
    finally:
        second.stop()

    failed = done[unreadable]
    assert (failed["status"], failed["success"], failed["state"]) == ("failed", False, "ended")
    assert "could not read this call back" in failed["reason"], failed["reason"]
    assert problem in failed["reason"] and "its channels were hung up" in failed["reason"], \
        failed["reason"]
    assert failed["metadata"] == {"crm": "lead-7"}
    # What its snapshot still tells, else the request's words only.
    assert (failed["leg_a"]["answered_at"] is not None) is legs_known, failed["leg_a"]
    assert failed["leg_a"]["target"] == "+27115550101"
    assert done[readable]["status"] == "completed", done[readable]["reason"]
    assert done[readable]["hangup_by"] == "time_limit"

    assert closed.status_code == 200, closed.text
    stored = closed.json()
    assert (stored["state"], stored["status"]) == ("ended", "failed")
    assert stored["result"] == failed
    assert stored["timeline"][-1]["data"]["to"] == "ended", stored["timeline"]
    document = OpenApiDocument()
    document.check("get", "/v1/calls/{call_id}", closed)
    for body in receiver.bodies:
        document.webhook(body)

    [logged] = log_events(second, "daemon.reconcile_unreadable")
    assert logged["call_id"] == unreadable and problem in logged["error"], logged
    assert not await channels_gone(peer), "the unreadable call's channels were left up"


# ---------------------------------------------------------------- an inbound caller's answer

NUMBER = "+27115550900"


async def call_in(daemon: DaemonProcess, peer: EslPeer, receiver: WebhookReceiver,
                  action: dict[str, Any], caller: PeerCaller | None = None) -> tuple[str, Channel]:
    """A number whose callers get ``action``; one caller calls it. The call's
    id and the caller's channel on the switch."""
    async with api(daemon) as client:
        put = await client.put(f"/v1/numbers/{NUMBER}", json={
            "actions": [action], "webhook_url": receiver.url, "webhook_events": ["completed"]})
        assert put.status_code == 200, put.text
        channel = await peer.call_in(NUMBER, caller or PeerCaller())
        async with asyncio.timeout(15):
            while not (calls := (await client.get("/v1/calls")).json()["calls"]):
                await asyncio.sleep(0.05)
    return calls[0]["call_uuid"], channel


async def stored_answer(store: Path, call_id: str, within: float = 10) -> float:
    """Leg A's answer as the store has it, once it has one."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        with sqlite3.connect(store) as db:
            (text,) = db.execute("SELECT snapshot FROM calls WHERE call_id = ?",
                                 (call_id,)).fetchone()
        answered = json.loads(text)["legs"]["a"]["answered_at"]
        if answered is not None:
            return float(answered)
        assert asyncio.get_running_loop().time() < deadline, \
            f"the store has no answer of leg A after {within:g} s"
        await asyncio.sleep(0.05)


def answered_on_switch(channel: Channel) -> float:
    assert channel.answered_at, f"the switch never answered {channel.uuid}"
    return channel.answered_at / 1e6


async def test_a_caller_answered_by_the_bridge_while_the_daemon_was_away_keeps_its_answer_time(
        peer: EslPeer, tmp_path: Path, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    store = tmp_path / "store.sqlite3"
    env = freeswitch_env(peer, tmp_path)
    first = DaemonProcess(store, tmp_path / "first.log", env)
    first.start()
    try:
        await first.ready()
        call_id, caller = await call_in(first, peer, receiver, {
            "type": "connect", "to": "sip:answer-after-2000@127.0.0.1", "time_limit": 8})
        async with api(first) as client:
            await wait_for_state(client, call_id, "ringing-b", timeout=15)
        first.signal(signal.SIGKILL)  # the agent answers, and the caller with it, meanwhile
        first.wait(10)
    finally:
        first.stop()
    async with asyncio.timeout(15):
        await caller.answered.wait()
    [agent] = [c for c in peer.channels.values() if c.originator is caller]

    second = DaemonProcess(store, tmp_path / "second.log", env)
    second.start()
    try:
        await second.ready()
        [result] = (await completions(receiver, 1)).values()
    finally:
        second.stop()
    assert result["status"] == "completed", result["reason"]
    # When the switch answered them, not when the daemon came back.
    assert result["leg_a"]["answered_at"] == answered_on_switch(caller)
    assert result["leg_b"]["answered_at"] == answered_on_switch(agent)



async def test_a_caller_a_step_answered_whose_call_ended_while_the_daemon_was_away_stays_answered(
        peer: EslPeer, tmp_path: Path, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    store = tmp_path / "store.sqlite3"
    env = freeswitch_env(peer, tmp_path)
    first = DaemonProcess(store, tmp_path / "first.log", env)
    first.start()
    try:
        await first.ready()
        # The pause answers the caller, who hangs up 4 s later.
        call_id, caller = await call_in(first, peer, receiver, {"type": "pause", "seconds": 10},
                                        PeerCaller(hangup_after=4.0))
        async with api(first) as client:
            await wait_for_state(client, call_id, "pausing", timeout=15)
        # An answer that moves the call to no other state is stored at once too.
        await stored_answer(store, call_id, within=2)
        assert not caller.gone.is_set(), "the call ended before the daemon stored its answer"
        first.signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.stop()
    async with asyncio.timeout(15):
        await caller.gone.wait()

    second = DaemonProcess(store, tmp_path / "second.log", env)
    second.start()
    try:
        await second.ready()
        [result] = (await completions(receiver, 1)).values()
    finally:
        second.stop()
    assert result["status"] == "completed", result["reason"]
    assert result["leg_a"]["status"] == "completed"
    assert result["leg_a"]["answered_at"] == pytest.approx(answered_on_switch(caller), abs=0.01)
