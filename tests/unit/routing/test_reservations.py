"""Unit tests for holding agents (controller.routing.reservations): a group
never offers an agent to two calls at once, whatever its strategy, nor an
agent who is leg A of a live call, and an agent is offered again once the
attempt that rang it ends.

The routers here share one reservation book and one agent book, as every
call's router does in the controller, and the book and the switch yield to
the event loop on every question (the store and the switch answer over I/O),
so calls that choose at once really interleave.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from controller.core.events import DialFinished, LegAnswered, LegCreated, RouteExhausted, TargetsChosen
from controller.core.outcomes import CallStatus, DialOutcome, Leg
from controller.core.states import CallState
from controller.routing.agents import AgentState, MemoryAgentBook
from controller.routing.reservations import Reservations, held_by
from controller.routing.router import CallQueues, Router
from controller.routing.spec import Group, Strategy
from tests.unit.core.helpers import T0, Run, make_plan, routing
from tests.unit.routing.test_router import AG1, AG2, Call, Switch, make_router, queued, route, sales

ONE_AT_A_TIME = [Strategy.ROUND_ROBIN, Strategy.SEQUENTIAL, Strategy.LONGEST_IDLE,
                 Strategy.LEAST_CALLS]


class StoreBook(MemoryAgentBook):
    """Agent state that, like the store, answers after a turn of the loop."""

    async def agent_states(self, targets: Sequence[str]) -> dict[str, AgentState]:
        await asyncio.sleep(0)
        return await super().agent_states(targets)

    async def group_cursor(self, group: str) -> int:
        await asyncio.sleep(0)
        return await super().group_cursor(group)

    async def set_group_cursor(self, group: str, index: int) -> None:
        await asyncio.sleep(0)
        await super().set_group_cursor(group, index)


class SlowSwitch(Switch):
    async def busy_targets(self, targets: Sequence[str]) -> set[str]:
        await asyncio.sleep(0)
        return await super().busy_targets(targets)


class Desk:
    """One controller's routing: every call's router shares its books."""

    def __init__(self, group: Group) -> None:
        self.group = group
        self.book = StoreBook()
        self.switch = SlowSwitch()
        self.queues = CallQueues()
        self.reservations = Reservations()

    def router(self, call_id: str, **options: object) -> Router:
        return make_router(route("group:sales"), groups=[self.group], book=self.book,
                           switch=self.switch, call_id=call_id, queues=self.queues,
                           reservations=self.reservations, **options)  # type: ignore[arg-type]

    def call(self, call_id: str) -> Call:
        return Call(self.router(call_id))


def all_busy(answer: TargetsChosen | RouteExhausted) -> bool:
    return (isinstance(answer, RouteExhausted) and answer.status is CallStatus.BUSY
            and answer.reason == "every agent of group sales is busy")


# ---------------------------------------------------------------- calls choosing at once


@pytest.mark.parametrize("strategy", ONE_AT_A_TIME, ids=str)
async def test_calls_choosing_at_once_get_different_agents_and_a_third_all_busy(
        strategy: Strategy) -> None:
    desk = Desk(sales(strategy, agents=(AG1, AG2)))
    first, second = await asyncio.gather(desk.call("call-1").ask(), desk.call("call-2").ask())
    assert isinstance(first, TargetsChosen) and isinstance(second, TargetsChosen)
    assert sorted([first.attempt.targets, second.attempt.targets]) == [(AG1,), (AG2,)]
    assert desk.reservations.holders() == {"call-1": set(first.attempt.targets),
                                           "call-2": set(second.attempt.targets)}
    assert all_busy(await desk.call("call-3").ask())


async def test_a_simultaneous_group_rings_its_agents_for_one_call_at_a_time() -> None:
    desk = Desk(sales(Strategy.SIMULTANEOUS, agents=(AG1, AG2)))
    answers = await asyncio.gather(desk.call("call-1").ask(), desk.call("call-2").ask())
    [rung] = [a for a in answers if isinstance(a, TargetsChosen)]
    assert rung.attempt.targets == (AG1, AG2)
    assert [all_busy(a) for a in answers].count(True) == 1


async def test_an_agent_taken_after_the_group_was_expanded_is_skipped() -> None:
    # Call 1 expands the group into AG1 then AG2; while AG1 rings, call 2
    # takes AG2. When AG1 does not answer, call 1 must not ring AG2 as well.
    desk = Desk(sales(Strategy.SEQUENTIAL, agents=(AG1, AG2)))
    first = desk.call("call-1")
    assert await first.ring() == (AG1,)
    assert await desk.call("call-2").ring() == (AG2,)
    assert all_busy(await first.ask("no-answer"))


# ---------------------------------------------------------------- held by the call's state


class Line:
    """A call's router and core, with the reservation book told of the core
    after every event, as the runner does."""

    def __init__(self, desk: Desk, call_id: str, leg_a: str = "+27115550101") -> None:
        self.desk = desk
        self.call = desk.call(call_id)
        self.run: Run = routing(make_plan(call_id=call_id, leg_a=leg_a, first_attempt=None,
                                          whisper_audio=None))
        self.follow()

    def follow(self) -> None:
        self.desk.reservations.follow(self.call.router.context.call_id, self.run.call)

    async def ring(self, previous: str | None = None) -> TargetsChosen | RouteExhausted:
        answer = await self.call.ask(previous)
        self.run.send(answer)
        self.follow()
        return answer

    def ends(self, outcome: DialOutcome, at: float) -> None:
        self.run.send(DialFinished(at=at, outcome=outcome))
        self.follow()


async def test_an_agent_is_offered_again_once_the_attempt_that_rang_it_ends() -> None:
    desk = Desk(sales(Strategy.SEQUENTIAL, agents=(AG1,)))
    first = Line(desk, "call-1")
    ringing = await first.ring()
    assert isinstance(ringing, TargetsChosen) and ringing.attempt.targets == (AG1,)
    assert first.run.state() is CallState.DIALING_B
    assert all_busy(await desk.call("call-2").ask())
    first.ends(DialOutcome.NO_ANSWER, T0 + 30)
    assert first.run.state() is CallState.ROUTING
    assert held_by(first.run.call) == {"+27115550101"}  # leg A only
    assert await desk.call("call-3").ring() == (AG1,)


async def test_once_one_agent_answers_only_that_one_is_held_until_the_call_ends() -> None:
    desk = Desk(sales(Strategy.SIMULTANEOUS, agents=(AG1, AG2)))
    first = Line(desk, "call-1")
    ringing = await first.ring()
    assert isinstance(ringing, TargetsChosen) and ringing.attempt.targets == (AG1, AG2)
    assert all_busy(await desk.call("call-2").ask())
    first.run.send(LegCreated(at=T0 + 9, leg=Leg.B, channel="b-1"),
                   LegAnswered(at=T0 + 10, leg=Leg.B, channel="b-1", target=AG1))
    first.follow()
    assert first.run.state() is CallState.BRIDGED
    assert held_by(first.run.call) == {"+27115550101", AG1}
    # AG2 stopped ringing when AG1 answered: free for the next call.
    assert await desk.call("call-3").ring() == (AG2,)
    desk.reservations.release("call-1")  # the call ended
    assert await desk.call("call-4").ring() == (AG1,)


async def test_an_agent_who_is_leg_a_of_a_live_call_is_not_offered_as_leg_b() -> None:
    desk = Desk(sales(Strategy.SEQUENTIAL, agents=(AG1, AG2)))
    Line(desk, "agent-calls-out", leg_a=AG1)  # AG1 placed a call: it is leg A
    call = desk.call("call-2")
    assert await call.ring_all("no-answer") == [(AG2,)]
    assert call.end is not None and call.end.status is CallStatus.NO_ANSWER


# ---------------------------------------------------------------- the queue


@pytest.fixture
def fast_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("controller.routing.router.QUEUE_POLL_SECONDS", 0.02)


async def ignore(text: str, hold_for: int) -> None:
    pass


async def test_the_queue_does_not_hand_a_held_agent_to_a_waiting_caller(fast_queue: None) -> None:
    desk = Desk(sales(Strategy.LONGEST_IDLE, agents=(AG1, AG2)))
    for agent in (AG1, AG2):
        await desk.book.agent_call_started(agent, f"busy-{agent}", time.time())
    router = make_router(queued(max_wait=30), groups=[desk.group], book=desk.book,
                         switch=desk.switch, call_id="waiting", queues=desk.queues,
                         reservations=desk.reservations, announce=ignore)
    waiting = asyncio.create_task(Call(router).ask())
    await asyncio.sleep(0.1)
    assert desk.queues.size("sales") == 1
    # AG2's call ends, but another call has already offered it one.
    desk.reservations.choose("other", [AG2])
    await desk.book.agent_call_ended(AG2, f"busy-{AG2}", time.time())
    await asyncio.sleep(0.3)
    assert not waiting.done(), "the waiting caller was handed an agent another call holds"
    desk.reservations.release("other")
    answer = await asyncio.wait_for(waiting, 5)
    assert isinstance(answer, TargetsChosen) and answer.attempt.targets == (AG2,)
