"""A daemon SIGKILLed while an inbound caller is being connected to an agent,
on the real lab: the bridge answers the caller while nobody listens, and the
restarted daemon reports the answer when the switch made it. Checked by the
call's result against what the caller's phone logged."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import pytest

from tests.conftest import StartReceiver
from tests.lab.callers import Caller
from tests.lab.conftest import DaemonProcess, api, calls_to, ended, put_number, wait_for_state
from tests.lab.live_fixtures import CallIn
from tests.lab.live_parts import CALLER, NUMBER, Agent


async def phone_logged(caller: Caller, message: str, timeout: float = 30) -> float:
    """When (as the test saw it) the caller's phone logged ``message``."""
    deadline = time.monotonic() + timeout
    while message not in (caller.log.read_text() if caller.log.exists() else ""):
        assert time.monotonic() < deadline, f"the caller's phone never logged {message!r}"
        await asyncio.sleep(0.05)
    return time.time()


async def killed_while_the_agent_rings(
        start_daemon: Callable[..., DaemonProcess], agents: Callable[[str], Agent],
        caller_phone: CallIn, webhook_receiver: StartReceiver,
        time_limit: int) -> tuple[str, Caller, float]:
    """An inbound caller connected to an agent who rings 4 s: the daemon is
    SIGKILLed while the agent rings. The call's id, the caller's phone, and
    when the connect rang."""
    agent = agents("answer-late.xml")
    receiver = await webhook_receiver()
    first = start_daemon()
    await first.ready()
    await put_number(first, {"actions": [{"type": "connect", "to": agent.uri,
                                          "time_limit": time_limit}],
                             "webhook_url": receiver.url, "webhook_events": ["completed"]})
    caller = caller_phone(NUMBER, CALLER)
    [call_id] = await calls_to(first, NUMBER)
    async with api(first) as client:
        await wait_for_state(client, call_id, "ringing-b")
    ringing = time.time()
    first.signal(signal.SIGKILL)
    first.wait(10)
    return call_id, caller, ringing


@pytest.mark.lab
async def test_a_caller_the_bridge_answered_while_the_daemon_was_away_keeps_its_answer_time(
        start_daemon: Callable[..., DaemonProcess], agents: Callable[[str], Agent],
        caller_phone: CallIn, webhook_receiver: StartReceiver) -> None:
    call_id, caller, ringing = await killed_while_the_agent_rings(
        start_daemon, agents, caller_phone, webhook_receiver, time_limit=8)
    answered = await phone_logged(caller, "answered")  # the agent took it: bridged
    second = start_daemon()
    await second.ready()
    call = await ended(second, call_id)
    assert await caller.finished() == ["answered", "bye"]
    result = call["result"]
    assert call["status"] == "completed", result["reason"]
    # Answered when the switch bridged it, before the daemon came back.
    assert ringing <= result["leg_a"]["answered_at"] <= answered, (ringing, answered, result)
    assert ringing <= result["leg_b"]["answered_at"] <= answered, (ringing, answered, result)


@pytest.mark.lab
async def test_a_caller_the_bridge_answered_whose_call_ended_while_the_daemon_was_away_stays_answered(
        start_daemon: Callable[..., DaemonProcess], agents: Callable[[str], Agent],
        caller_phone: CallIn, webhook_receiver: StartReceiver) -> None:
    call_id, caller, ringing = await killed_while_the_agent_rings(
        start_daemon, agents, caller_phone, webhook_receiver, time_limit=2)
    answered = await phone_logged(caller, "answered")
    # The switch ends the bridge at its time limit, before the daemon is back.
    assert await caller.finished() == ["answered", "bye"]
    second = start_daemon()
    await second.ready()
    call = await ended(second, call_id)
    result = call["result"]
    assert call["status"] == "completed", result["reason"]
    assert result["leg_a"]["status"] == "completed"
    assert result["leg_a"]["answered_at"] is not None, "the caller's answer was lost"
    assert ringing <= result["leg_a"]["answered_at"] <= answered, (ringing, answered, result)
    assert result["talk_seconds"] > 0, result
