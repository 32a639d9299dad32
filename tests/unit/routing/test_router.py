"""Unit tests for choosing leg B (controller.routing): the router's answers to
the core's ChooseTargets, agent groups and their strategies, dial-whom URLs
asked over real HTTP on loopback, fallbacks, and route spec parsing.

Each test drives the router the way the call service does: ask with how the
last attempt ended and the route state the core kept, get the next attempt
(TargetsChosen) or the end of the route (RouteExhausted).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from aiohttp import web

from controller.core.events import RouteExhausted, TargetsChosen
from controller.core.outcomes import CallStatus
from controller.core.plan import Attempt
from controller.errors import InvalidField, InvalidNumber
from controller.outbound import OutboundConfig
from controller.outbound_client import OutboundClient, live_calls_client
from controller.routing.agents import MemoryAgentBook
from controller.routing.dial_whom import DialWhomClient
from controller.routing.reservations import Reservations
from controller.routing.router import Announce, CallContext, CallQueues, Router
from controller.routing.spec import (
    Fallback,
    FallbackAction,
    Group,
    Outcome,
    QueueSpec,
    RouteItem,
    RouteSpec,
    Strategy,
    parse_fallbacks,
    parse_group,
    parse_item,
)
from tests.conftest import LiveClients, Serve

REGION = "ZA"
LEG_A = "+27115550101"
N1, N2, N3, N4 = "+27115550201", "+27115550202", "+27115550203", "+27115550204"
OTHER = "+27115550299"  # a fallback's target
CALLER_ID = "+27115550900"  # the number calls are placed from
AG1, AG2, AG3 = "+27115550301", "+27115550302", "+27115550303"  # agents of group "sales"
UNREACHED = "Sorry, nobody could be reached."
# The dial-whom servers here run on 127.0.0.1.
LOOPBACK_ALLOWED = OutboundConfig(allow_private=True)


async def speak(text: str) -> str:
    return f"/audio/{text}"


# ---------------------------------------------------------------- a dial-whom URL on loopback

HANG = "hang"  # answer nothing until the test is over
Answer = tuple[int, str] | str


class DialWhomServer:
    """A real HTTP server on 127.0.0.1 standing for dial-whom URLs. Each path
    gives its answers in turn, the last one again and again; every request's
    query is recorded."""

    def __init__(self, client: OutboundClient) -> None:
        self.client = client  # the live calls' client that asks it
        self.answers: dict[str, list[Answer]] = {}
        self.asked: list[tuple[str, dict[str, str]]] = []
        self.release = asyncio.Event()
        self.base = ""

    def url(self, path: str, *answers: Answer) -> str:
        self.answers[path] = list(answers)
        return f"{self.base}{path}?token=s3cret"

    def queries(self, path: str) -> list[dict[str, str]]:
        return [query for asked, query in self.asked if asked == path]

    def paths(self) -> list[str]:
        return [path for path, _ in self.asked]

    async def handle(self, request: web.Request) -> web.Response:
        self.asked.append((request.path, dict(request.query)))
        queue = self.answers.get(request.path, [(404, "")])
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if answer == HANG:
            await self.release.wait()
            return web.Response(text=OTHER)
        status, body = answer
        return web.Response(status=status, text=body, content_type="text/plain")


@pytest.fixture
async def dial_whom(serve: Serve, live_clients: LiveClients) -> AsyncIterator[DialWhomServer]:
    server = DialWhomServer(live_clients(LOOPBACK_ALLOWED))
    app = web.Application()
    app.router.add_get("/{name}", server.handle)
    server.base = await serve(app)
    yield server
    server.release.set()  # let a hanging answer finish before the server stops


# ---------------------------------------------------------------- the router as the service drives it


@dataclass
class Switch:
    """What the switch says is in use (Backend.busy_targets), and who asked."""

    busy: set[str] = field(default_factory=set)
    asked: list[list[str]] = field(default_factory=list)

    async def busy_targets(self, targets: Sequence[str]) -> set[str]:
        self.asked.append(list(targets))
        return self.busy & set(targets)


class Guarded(dict[Outcome, Fallback]):
    """Fallbacks that fail the test when looked up without end: a router
    that loops without awaiting anything cannot be stopped by a timeout."""

    lookups = 0

    def get(self, key: Outcome, default: Any = None) -> Any:
        self.lookups += 1
        assert self.lookups < 100, "the router loops"
        return super().get(key, default)


async def no_announcements(text: str, hold_for: int) -> None:
    raise AssertionError(f"announced {text!r} outside a queue")


def make_router(spec: RouteSpec, *, groups: Iterable[Group] = (), book: MemoryAgentBook | None = None,
                switch: Switch | None = None, timeout: float = 0.5, call_id: str = "call-1",
                queues: CallQueues | None = None, announce: Announce = no_announcements,
                reservations: Reservations | None = None,
                asker: OutboundClient | None = None) -> Router:
    """``asker``: the live calls' client a dial-whom URL is asked through
    (DialWhomServer.client); a route without one never asks, and a client
    never used holds nothing to close."""
    by_name = {group.name: replace(group, fallbacks=Guarded(group.fallbacks)) for group in groups}
    spec = replace(spec, fallbacks=Guarded(spec.fallbacks))
    return Router(spec, CallContext(call_id, LEG_A, CALLER_ID, "crm-42"),
                  groups=by_name.get, agents=book or MemoryAgentBook(),
                  busy_targets=(switch or Switch()).busy_targets,
                  dial_whom=DialWhomClient(REGION, asker or live_calls_client(LOOPBACK_ALLOWED),
                                            timeout=timeout),
                  speak=speak,
                  unreached_message=UNREACHED, queues=queues or CallQueues(), announce=announce,
                  reservations=reservations or Reservations())


class Call:
    """Leg B of one call, as the core keeps it: the route state goes through
    JSON between asks, as it does through the store."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.state: dict[str, Any] = {}
        self.attempts: list[Attempt] = []
        self.end: RouteExhausted | None = None

    async def ask(self, previous: str | None = None) -> TargetsChosen | RouteExhausted:
        async with asyncio.timeout(5):  # a router that loops fails the test
            answer = await self.router.next(previous, self.state)
        if isinstance(answer, TargetsChosen):
            self.state = json.loads(json.dumps(answer.route_state))
            self.attempts.append(answer.attempt)
        else:
            self.end = answer
        return answer

    async def ring(self, previous: str | None = None) -> tuple[str, ...]:
        """The targets of the next attempt (there must be one)."""
        answer = await self.ask(previous)
        assert isinstance(answer, TargetsChosen), f"expected an attempt, got {answer}"
        return answer.attempt.targets

    async def run_out(self, previous: str) -> RouteExhausted:
        answer = await self.ask(previous)
        assert isinstance(answer, RouteExhausted), f"expected the route's end, got {answer}"
        return answer

    async def ring_all(self, outcome: str) -> list[tuple[str, ...]]:
        """Ring until the route runs out (``end``), every attempt ending with
        ``outcome``; the targets of each attempt."""
        rung = [await self.ring()]
        while isinstance(answer := await self.ask(outcome), TargetsChosen):
            rung.append(answer.attempt.targets)
        return rung


def route(*targets: str, strategy: Strategy = Strategy.SEQUENTIAL, **options: Any) -> RouteSpec:
    return RouteSpec(tuple(RouteItem(t) for t in targets), strategy, **options)


def fallbacks(spec: dict[str, Any]) -> dict[Outcome, Fallback]:
    return parse_fallbacks(spec, REGION, "fallbacks", lambda name: name == "sales")


def sales(strategy: Strategy, agents: tuple[str, ...] = (AG1, AG2, AG3), **options: Any) -> Group:
    return Group("sales", strategy, agents, **options)


# ---------------------------------------------------------------- plain targets


async def test_simultaneous_targets_ring_in_one_attempt_then_run_out() -> None:
    call = Call(make_router(route(N1, N2, strategy=Strategy.SIMULTANEOUS, ring_timeout=25)))
    first = await call.ask()
    assert isinstance(first, TargetsChosen)
    assert first.attempt == Attempt((N1, N2), 25, "request")
    end = await call.run_out("no-answer")
    assert (end.status, end.message_audio) == (CallStatus.NO_ANSWER, f"/audio/{UNREACHED}")
    assert "no-answer" in end.reason


async def test_sequential_targets_ring_one_by_one_with_their_own_ring_timeouts() -> None:
    spec = RouteSpec((RouteItem(N1, 10), RouteItem(N2)), Strategy.SEQUENTIAL, ring_timeout=30)
    call = Call(make_router(spec))
    assert await call.ring_all("busy") == [(N1,), (N2,)]
    assert [a.ring_timeout for a in call.attempts] == [10, 30]


@pytest.mark.parametrize(("previous", "status"), [
    ("busy", CallStatus.BUSY), ("rejected", CallStatus.BUSY), ("no-answer", CallStatus.NO_ANSWER),
    ("declined", CallStatus.NO_ANSWER), ("failed", CallStatus.FAILED),
])
async def test_the_call_status_follows_how_the_last_attempt_ended(previous: str,
                                                                  status: CallStatus) -> None:
    call = Call(make_router(route(N1)))
    await call.ring()
    assert (await call.run_out(previous)).status is status


async def test_max_attempts_is_respected() -> None:
    call = Call(make_router(route(N1, N2, N3, N4, max_attempts=2,
                                  fallbacks=fallbacks({"no_answer": {"dial": [OTHER]}}))))
    assert await call.ring_all("no-answer") == [(N1,), (N2,)]
    assert call.end is not None
    assert call.end.status is CallStatus.NO_ANSWER
    assert "2 attempts" in call.end.reason


# ---------------------------------------------------------------- fallbacks


async def test_fallback_dials_another_target_once_only() -> None:
    # The fallback's target fails the same way: no second round of it.
    call = Call(make_router(route(N1, fallbacks=fallbacks({"no_answer": {"dial": [OTHER, N1]}}))))
    assert await call.ring_all("no-answer") == [(N1,), (OTHER,)]
    assert call.attempts[1].source == "fallback:no_answer"
    assert call.end is not None
    assert (call.end.status, call.end.message_audio) == (CallStatus.NO_ANSWER, f"/audio/{UNREACHED}")


async def test_fallback_is_chosen_by_how_the_route_ran_out() -> None:
    spec = route(N1, fallbacks=fallbacks({"busy": {"message": "Everyone is on the phone."},
                                          "no_answer": {"hangup": True}}))
    busy = Call(make_router(spec))
    await busy.ring()
    end = await busy.run_out("busy")
    assert (end.status, end.message_audio) == (CallStatus.BUSY, "/audio/Everyone is on the phone.")
    unanswered = Call(make_router(spec))
    await unanswered.ring()
    end = await unanswered.run_out("no-answer")
    assert (end.status, end.message_audio) == (CallStatus.NO_ANSWER, None)


async def test_fallbacks_of_different_outcomes_each_run_once() -> None:
    spec = route(N1, fallbacks=fallbacks({"busy": {"dial": [N2]}, "no_answer": {"dial": [N3]}}))
    call = Call(make_router(spec))
    assert await call.ring() == (N1,)
    assert await call.ring("busy") == (N2,)
    assert await call.ring("no-answer") == (N3,)
    # Busy again: its fallback was taken already.
    end = await call.run_out("busy")
    assert (end.status, end.message_audio) == (CallStatus.BUSY, f"/audio/{UNREACHED}")


# ---------------------------------------------------------------- groups


async def test_round_robin_rotates_across_calls() -> None:
    book = MemoryAgentBook()  # the daemon's store: shared by every call
    group = sales(Strategy.ROUND_ROBIN)
    firsts = []
    for n in range(4):
        call = Call(make_router(route("group:sales"), groups=[group], book=book, call_id=f"call-{n}"))
        firsts.append((await call.ring())[0])
    assert firsts == [AG1, AG2, AG3, AG1]
    # Within a call, the others follow in the rotated order, each once.
    call = Call(make_router(route("group:sales"), groups=[group], book=book))
    assert await call.ring_all("no-answer") == [(AG2,), (AG3,), (AG1,)]
    assert all(a.source == "group:sales" for a in call.attempts)


async def test_longest_idle_rings_the_agent_idle_longest_first() -> None:
    book = MemoryAgentBook()
    now = time.time()
    await book.agent_call_ended(AG1, "old-1", now - 10)
    await book.agent_call_ended(AG2, "old-2", now - 600)
    # AG3 never had a call: idle longest of all.
    call = Call(make_router(route("group:sales"), groups=[sales(Strategy.LONGEST_IDLE)], book=book))
    assert await call.ring_all("no-answer") == [(AG3,), (AG2,), (AG1,)]


async def test_least_calls_counts_calls_within_the_period() -> None:
    book = MemoryAgentBook()
    now = time.time()
    calls = {AG1: [now - 60] * 3, AG2: [now - 60] + [now - 3 * 3600] * 5, AG3: [now - 60] * 2}
    for agent, starts in calls.items():
        for n, at in enumerate(starts):
            await book.agent_call_started(agent, f"{agent}-{n}", at)
            await book.agent_call_ended(agent, f"{agent}-{n}", at + 30)
    group = sales(Strategy.LEAST_CALLS, calls_period_hours=1)
    call = Call(make_router(route("group:sales"), groups=[group], book=book))
    # AG2's five old calls are outside the hour: it has had one call.
    assert await call.ring_all("no-answer") == [(AG2,), (AG3,), (AG1,)]


async def test_sequential_group_keeps_its_priority_order() -> None:
    book = MemoryAgentBook()
    now = time.time()
    # Idle times and call counts that would reorder any other strategy.
    await book.agent_call_started(AG1, "c", now - 60)
    await book.agent_call_ended(AG1, "c", now - 1)
    call = Call(make_router(route("group:sales"), groups=[sales(Strategy.SEQUENTIAL)], book=book))
    assert await call.ring_all("busy") == [(AG1,), (AG2,), (AG3,)]


async def test_agents_on_a_call_or_busy_on_the_switch_are_skipped() -> None:
    book = MemoryAgentBook()
    await book.agent_call_started(AG1, "another-call", time.time())
    switch = Switch(busy={AG2, "+27115550999"})
    call = Call(make_router(route("group:sales"), groups=[sales(Strategy.SEQUENTIAL)], book=book,
                            switch=switch))
    assert await call.ring_all("no-answer") == [(AG3,)]
    assert switch.asked[0] == [AG1, AG2, AG3]


async def test_simultaneous_group_rings_every_free_agent_at_once() -> None:
    group = sales(Strategy.SIMULTANEOUS, ring_timeout=12)
    call = Call(make_router(route("group:sales"), groups=[group], switch=Switch(busy={AG2})))
    first = await call.ask()
    assert isinstance(first, TargetsChosen)
    assert first.attempt == Attempt((AG1, AG3), 12, "group:sales")
    assert (await call.run_out("no-answer")).status is CallStatus.NO_ANSWER


async def test_a_group_agent_is_not_rung_twice_in_one_call() -> None:
    # The route names an agent directly and through the group.
    call = Call(make_router(route(AG2, "group:sales"), groups=[sales(Strategy.SEQUENTIAL)]))
    assert await call.ring_all("no-answer") == [(AG2,), (AG1,), (AG3,)]


@pytest.mark.parametrize(("fallback", "expected"), [
    ({"dial": [OTHER]}, (OTHER,)),
    ({"message": "All our agents are busy."}, "/audio/All our agents are busy."),
    ({"hangup": True}, None),
], ids=["dial", "message", "hangup"])
async def test_all_agents_busy_takes_the_groups_fallback(fallback: dict[str, Any],
                                                         expected: tuple[str, ...] | str | None) -> None:
    group = sales(Strategy.ROUND_ROBIN, fallbacks=fallbacks({"all_busy": fallback}))
    call = Call(make_router(route("group:sales"), groups=[group], switch=Switch(busy={AG1, AG2, AG3})))
    answer = await call.ask()
    if isinstance(expected, tuple):
        assert isinstance(answer, TargetsChosen)
        assert answer.attempt.targets == expected
        assert answer.attempt.source == "fallback:all_busy"
        # The fallback's target fails too: the call ends, with no second fallback.
        answer = await call.ask("no-answer")
        assert isinstance(answer, RouteExhausted)
        assert (answer.status, answer.message_audio) == (CallStatus.NO_ANSWER, f"/audio/{UNREACHED}")
        return
    assert isinstance(answer, RouteExhausted)
    assert answer.status is CallStatus.BUSY
    assert "sales" in answer.reason and "busy" in answer.reason
    assert answer.message_audio == expected
    assert call.attempts == []


async def test_all_agents_busy_without_a_fallback_ends_with_the_unreached_message() -> None:
    book = MemoryAgentBook()
    for agent in (AG1, AG2):
        await book.agent_call_started(agent, f"other-{agent}", time.time())
    group = sales(Strategy.LONGEST_IDLE, agents=(AG1, AG2))
    end = await Call(make_router(route("group:sales"), groups=[group], book=book)).ask()
    assert isinstance(end, RouteExhausted)
    assert end.status is CallStatus.BUSY
    assert end.reason == "every agent of group sales is busy"
    assert end.message_audio == f"/audio/{UNREACHED}"


async def test_the_routes_fallback_wins_over_the_groups() -> None:
    group = sales(Strategy.SEQUENTIAL, fallbacks=fallbacks({"all_busy": {"dial": [N1]}}))
    spec = route("group:sales", fallbacks=fallbacks({"all_busy": {"dial": [OTHER]}}))
    call = Call(make_router(spec, groups=[group], switch=Switch(busy={AG1, AG2, AG3})))
    assert await call.ring() == (OTHER,)


async def test_a_fallback_back_to_the_busy_group_does_not_loop() -> None:
    spec = route("group:sales", fallbacks=fallbacks({"all_busy": {"dial": ["group:sales"]}}))
    switch = Switch(busy={AG1, AG2, AG3})
    end = await Call(make_router(spec, groups=[sales(Strategy.ROUND_ROBIN)], switch=switch)).ask()
    assert isinstance(end, RouteExhausted)
    assert end.status is CallStatus.BUSY
    assert len(switch.asked) == 2  # the group, then once more through its fallback


# ---------------------------------------------------------------- queue fallback

def queued(**queue: Any) -> RouteSpec:
    spec = QueueSpec("sales", **queue)
    return route("group:sales", fallbacks={Outcome.ALL_BUSY: Fallback(FallbackAction.QUEUE,
                                                                     queue=spec)})


@pytest.fixture
def fast_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("controller.routing.router.QUEUE_POLL_SECONDS", 0.02)


async def test_a_queued_caller_gets_the_first_agent_to_come_free(fast_queue: None) -> None:
    book = MemoryAgentBook()
    for agent in (AG1, AG2):
        await book.agent_call_started(agent, f"busy-{agent}", time.time())
    heard: list[tuple[str, int]] = []

    async def announce(text: str, hold_for: int) -> None:
        heard.append((text, hold_for))

    group = sales(Strategy.LONGEST_IDLE, agents=(AG1, AG2))
    router = make_router(queued(max_wait=30), groups=[group], book=book, announce=announce)
    asked = asyncio.create_task(Call(router).ask())
    await asyncio.sleep(0.2)
    assert not asked.done()
    await book.agent_call_ended(AG2, f"busy-{AG2}", time.time())
    answer = await asyncio.wait_for(asked, 2)
    assert isinstance(answer, TargetsChosen)
    assert answer.attempt.targets == (AG2,)
    assert heard and "next in line" in heard[0][0] and 25 <= heard[0][1] <= 40


async def test_queue_positions_are_first_come_first_served(fast_queue: None) -> None:
    queues = CallQueues()
    switch = Switch(busy={AG1, AG2, AG3})
    heard: dict[str, list[str]] = {"first": [], "second": []}

    def announcer(who: str) -> Announce:
        async def announce(text: str, hold_for: int) -> None:
            heard[who].append(text)
        return announce

    # One reservation book for both calls, as the call service has: the agent the
    # head of the line takes is held, so the next caller cannot race it for him.
    reservations = Reservations()
    routers = [make_router(queued(max_wait=30), groups=[sales(Strategy.SEQUENTIAL)],
                           switch=switch, queues=queues, call_id=who, announce=announcer(who),
                           reservations=reservations)
               for who in ("first", "second")]
    first = asyncio.create_task(Call(routers[0]).ask())
    await asyncio.sleep(0.1)
    second = asyncio.create_task(Call(routers[1]).ask())
    await asyncio.sleep(0.1)
    assert "number 2 in line" in heard["second"][0]
    switch.busy.discard(AG3)
    answer = await asyncio.wait_for(first, 2)
    assert isinstance(answer, TargetsChosen) and answer.attempt.targets == (AG3,)
    assert not second.done()  # still waiting: only the head of the line is served
    second.cancel()


async def test_a_full_queue_or_a_long_wait_ends_with_the_queue_message(fast_queue: None) -> None:
    queues = CallQueues()
    queues.join("sales", "someone-else")
    switch = Switch(busy={AG1, AG2, AG3})
    full = await Call(make_router(queued(max_size=1), groups=[sales(Strategy.SEQUENTIAL)],
                                  switch=switch, queues=queues)).ask()
    assert isinstance(full, RouteExhausted)
    assert full.reason == "the queue for group sales is full"
    assert full.status is CallStatus.BUSY and full.message_audio
    queues.leave("sales", "someone-else")

    async def ignore(text: str, hold_for: int) -> None:
        pass

    router = make_router(queued(max_wait=1, message="Goodbye."), groups=[sales(Strategy.SEQUENTIAL)],
                         switch=switch, queues=queues, announce=ignore)
    waited = await Call(router).ask()
    assert isinstance(waited, RouteExhausted)
    assert waited.reason == "waited 1 s in the queue for group sales"
    assert waited.message_audio == "/audio/Goodbye."
    assert queues.size("sales") == 0  # it left the line


def test_parse_queue_fallback() -> None:
    exists = {"sales"}.__contains__
    parsed = parse_fallbacks({"all_busy": {"queue": {"group": "sales", "max_wait": 60}}},
                             REGION, "fallbacks", exists)
    assert parsed[Outcome.ALL_BUSY].queue == QueueSpec("sales", max_wait=60)
    for bad, named in [({"group": "nope"}, "fallbacks.all_busy.queue.group"),
                       ({"group": "sales", "max_wait": 1}, "fallbacks.all_busy.queue.max_wait"),
                       ({"group": "sales", "colour": 1}, "fallbacks.all_busy.queue")]:
        with pytest.raises(InvalidField) as raised:
            parse_fallbacks({"all_busy": {"queue": bad}}, REGION, "fallbacks", exists)
        assert raised.value.details["field"] == named


async def test_busy_group_before_other_targets_moves_on() -> None:
    spec = route("group:sales", N1)
    call = Call(make_router(spec, groups=[sales(Strategy.SEQUENTIAL)], switch=Switch(busy={AG1, AG2, AG3})))
    assert await call.ring() == (N1,)
    # The last attempt decides how the route ran out, not the busy group.
    assert (await call.run_out("no-answer")).status is CallStatus.NO_ANSWER


# ---------------------------------------------------------------- dial whom


async def test_dial_whom_numbers_are_rung_and_the_url_is_told_about_the_call(
        dial_whom: DialWhomServer) -> None:
    url = dial_whom.url("/whom", (200, f" {N1}, {N2}\n{N3} ,not-a-number,, {N1} ,123\n"))
    call = Call(make_router(route(url, ask_again=False, ring_timeout=18), asker=dial_whom.client))
    assert await call.ring_all("no-answer") == [(N1,), (N2,), (N3,)]
    assert [(a.source, a.ring_timeout) for a in call.attempts] == [("dial-whom", 18)] * 3
    [query] = dial_whom.queries("/whom")
    assert query == {
        "token": "s3cret", "CallSid": "call-1", "CallFrom": LEG_A, "CallTo": CALLER_ID,
        "CallStatus": "in-progress", "Direction": "outbound-dial", "DialCallStatus": "",
        "DialWhomNumber": "", "Digits": "", "CustomField": "crm-42",
    }


async def test_dial_whom_on_an_inbound_call_is_told_the_caller_the_number_and_the_digits(
        dial_whom: DialWhomServer) -> None:
    url = dial_whom.url("/whom", (200, N1))
    router = make_router(route(url, ask_again=False), asker=dial_whom.client)
    router.context = CallContext.inbound("call-1", LEG_A, CALLER_ID, digits="2",
                                         custom_field="crm-42")
    assert await Call(router).ring_all("no-answer") == [(N1,)]
    [query] = dial_whom.queries("/whom")
    assert {name: query[name] for name in ("Direction", "CallFrom", "CallTo", "Digits")} == {
        "Direction": "incoming", "CallFrom": LEG_A, "CallTo": CALLER_ID, "Digits": "2"}


async def test_dial_whom_numbers_ring_together_in_a_simultaneous_route(
        dial_whom: DialWhomServer) -> None:
    url = dial_whom.url("/whom", (200, f"{N1},{N2},{N1}"))
    first = await Call(make_router(route(url, strategy=Strategy.SIMULTANEOUS), asker=dial_whom.client)).ask()
    assert isinstance(first, TargetsChosen)
    assert first.attempt == Attempt((N1, N2), 30, "dial-whom")


async def test_dial_whom_error_asks_the_fallback_url(dial_whom: DialWhomServer) -> None:
    url = dial_whom.url("/primary", (500, "oops"))
    backup = dial_whom.url("/backup", (200, N2))
    call = Call(make_router(route(url, fallback_url=backup), asker=dial_whom.client))
    assert await call.ring() == (N2,)
    assert dial_whom.paths() == ["/primary", "/backup"]
    assert dial_whom.queries("/backup")[0]["CallSid"] == "call-1"


async def test_dial_whom_too_slow_asks_the_fallback_url(dial_whom: DialWhomServer) -> None:
    url = dial_whom.url("/slow", HANG)
    backup = dial_whom.url("/backup", (200, N3))
    call = Call(make_router(route(url, fallback_url=backup), timeout=0.5, asker=dial_whom.client))
    started = time.monotonic()
    assert await call.ring() == (N3,)
    assert 0.4 < time.monotonic() - started < 3
    assert dial_whom.paths() == ["/slow", "/backup"]


async def test_dial_whom_both_urls_failing_ends_the_route(dial_whom: DialWhomServer) -> None:
    url = dial_whom.url("/primary", (503, ""))
    backup = dial_whom.url("/backup", HANG)
    end = await Call(make_router(route(url, fallback_url=backup), timeout=0.5, asker=dial_whom.client)).ask()
    assert isinstance(end, RouteExhausted)
    assert end.status is CallStatus.FAILED
    assert "HTTP 503" in end.reason and "did not answer within 0.5 s" in end.reason
    assert "s3cret" not in end.reason  # URLs are redacted
    assert end.message_audio == f"/audio/{UNREACHED}"


@pytest.mark.parametrize("body", ["", "nobody, here\n"], ids=["empty", "garbage-only"])
async def test_dial_whom_with_no_number_takes_the_failed_fallback(dial_whom: DialWhomServer,
                                                                  body: str) -> None:
    url = dial_whom.url("/whom", (200, body))
    backup = dial_whom.url("/backup", (200, N4))
    spec = route(url, fallback_url=backup, fallbacks=fallbacks({"failed": {"dial": [OTHER]}}))
    call = Call(make_router(spec, asker=dial_whom.client))
    # A 200 with no number is an answer: the backup URL is not asked.
    assert await call.ring() == (OTHER,)
    assert call.attempts[0].source == "fallback:failed"
    assert dial_whom.paths() == ["/whom"]


async def test_dial_whom_with_no_number_and_a_message_fallback(dial_whom: DialWhomServer) -> None:
    url = dial_whom.url("/whom", (200, ""))
    spec = route(url, fallbacks=fallbacks({"failed": {"message": "Nobody is on duty."}}))
    end = await Call(make_router(spec, asker=dial_whom.client)).ask()
    assert isinstance(end, RouteExhausted)
    assert (end.status, end.message_audio) == (CallStatus.FAILED, "/audio/Nobody is on duty.")
    assert "no number" in end.reason


async def test_dial_whom_is_asked_again_after_a_failed_attempt(dial_whom: DialWhomServer) -> None:
    url = dial_whom.url("/whom", (200, f"{N1},{N2},{N3}"), (200, f"{N4}, {N1}"), (200, f"{N1},{N4}"))
    call = Call(make_router(route(url), asker=dial_whom.client))
    assert await call.ring() == (N1,)
    # The new answer replaces what was left of the first (N2, N3); N1 was rung.
    assert await call.ring("busy") == (N4,)
    end = await call.run_out("no-answer")
    assert end.status is CallStatus.NO_ANSWER
    queries = dial_whom.queries("/whom")
    assert [(q["DialCallStatus"], q["DialWhomNumber"]) for q in queries] == [
        ("", ""), ("busy", N1), ("no-answer", N4)]
    assert all(q["CallSid"] == "call-1" and q["CustomField"] == "crm-42" for q in queries)
    assert [a.targets for a in call.attempts] == [(N1,), (N4,)]


async def test_dial_whom_not_asked_again_when_told_not_to(dial_whom: DialWhomServer) -> None:
    url = dial_whom.url("/whom", (200, f"{N1},{N2}"))
    call = Call(make_router(route(url, ask_again=False), asker=dial_whom.client))
    assert await call.ring_all("failed") == [(N1,), (N2,)]
    assert len(dial_whom.asked) == 1


async def test_dial_whom_asked_again_is_not_asked_past_max_attempts(dial_whom: DialWhomServer) -> None:
    url = dial_whom.url("/whom", (200, f"{N1},{N2}"))
    call = Call(make_router(route(url, max_attempts=1), asker=dial_whom.client))
    await call.ring()
    await call.run_out("busy")
    assert len(dial_whom.asked) == 1


# ---------------------------------------------------------------- the route state


async def test_route_state_survives_json_and_a_new_router_per_ask(dial_whom: DialWhomServer) -> None:
    """A restarted daemon builds a new Router and hands it the stored state:
    it carries on exactly as the router that never stopped."""
    url = dial_whom.url("/whom", (200, f"{N1},{N2}"))
    spec = route("group:sales", url, N3, fallbacks=fallbacks({"no_answer": {"dial": [OTHER]}}))
    group = sales(Strategy.ROUND_ROBIN, agents=(AG1, AG2))
    # How each attempt ends, in turn.
    outcomes = iter(["no-answer", "busy", "no-answer", "no-answer", "no-answer", "no-answer"])

    async def run(restart: bool) -> tuple[list[Attempt], RouteExhausted]:
        book = MemoryAgentBook()
        router = make_router(spec, groups=[group], book=book, asker=dial_whom.client)
        state: dict[str, Any] = {}
        attempts: list[Attempt] = []
        previous: str | None = None
        while True:
            if restart:
                router = make_router(spec, groups=[group], book=book, asker=dial_whom.client)
                state = json.loads(json.dumps(state))
            answer = await router.next(previous, state)
            if isinstance(answer, RouteExhausted):
                return attempts, answer
            attempts.append(answer.attempt)
            state, previous = answer.route_state, next(outcomes)

    attempts, end = await run(restart=False)
    assert [(a.targets, a.source) for a in attempts] == [
        ((AG1,), "group:sales"), ((AG2,), "group:sales"), ((N1,), "dial-whom"), ((N2,), "dial-whom"),
        ((N3,), "request"), ((OTHER,), "fallback:no_answer")]
    assert (end.status, end.message_audio) == (CallStatus.NO_ANSWER, f"/audio/{UNREACHED}")
    outcomes = iter(["no-answer", "busy", "no-answer", "no-answer", "no-answer", "no-answer"])
    restarted, restarted_end = await run(restart=True)
    assert restarted == attempts
    assert (restarted_end.status, restarted_end.reason) == (end.status, end.reason)


# ---------------------------------------------------------------- spec parsing


def group_exists(name: str) -> bool:
    return name == "sales"


def item(value: Any) -> RouteItem:
    return parse_item(value, REGION, "to[0]", group_exists)


def test_parse_item_normalises_targets() -> None:
    assert item(" 011 555 0201 ") == RouteItem(N1)
    assert item({"to": "group:sales", "ring_timeout": 15}) == RouteItem("group:sales", 15)
    assert item("endpoint:desk-7") == RouteItem("endpoint:desk-7")
    assert item("https://crm.example/whom?k=v").is_url
    assert item("group:sales").is_group


@pytest.mark.parametrize(("value", "field_name"), [
    (42, "to[0]"),
    ("  ", "to[0]"),
    ({"to": N1, "colour": "red"}, "to[0]"),
    ({"to": N1, "ring_timeout": 0}, "to[0].ring_timeout"),
    ({"to": N1, "ring_timeout": True}, "to[0].ring_timeout"),
    ({"to": N1, "ring_timeout": 601}, "to[0].ring_timeout"),
    ("group:support", "to[0]"),
    ("group:..", "to[0]"),
    ("group:Sales", "to[0]"),
    ("group:\uff53ales", "to[0]"),
    ("https://", "to[0]"),
    ("https://crm.example/who m", "to[0]"),
])
def test_parse_item_errors_name_the_field(value: Any, field_name: str) -> None:
    with pytest.raises(InvalidField) as info:
        item(value)
    assert info.value.details == {"field": field_name}


def test_parse_item_bad_number_names_the_field() -> None:
    with pytest.raises(InvalidNumber) as info:
        item("+27 not a number")
    assert info.value.details == {"field": "to[0]"}


def test_parse_fallbacks() -> None:
    assert fallbacks({"busy": {"dial": N1}, "no_answer": {"dial": [{"to": N2, "ring_timeout": 9}]},
                      "failed": {"message": "Try later."}, "all_busy": {"hangup": True}}) == {
        Outcome.BUSY: Fallback(FallbackAction.DIAL, (RouteItem(N1),)),
        Outcome.NO_ANSWER: Fallback(FallbackAction.DIAL, (RouteItem(N2, 9),)),
        Outcome.FAILED: Fallback(FallbackAction.MESSAGE, message="Try later."),
        Outcome.ALL_BUSY: Fallback(FallbackAction.HANGUP),
    }
    assert parse_fallbacks(None, REGION, "fallbacks", group_exists) == {}


@pytest.mark.parametrize(("value", "field_name"), [
    ([], "fallbacks"),
    ({"maybe": {"hangup": True}}, "fallbacks.maybe"),
    ({"busy": "hangup"}, "fallbacks.busy"),
    ({"busy": {"hangup": True, "message": "x"}}, "fallbacks.busy"),
    ({"busy": {"hangup": False}}, "fallbacks.busy"),
    ({"busy": {"ring": [N1]}}, "fallbacks.busy"),
    ({"busy": {"dial": []}}, "fallbacks.busy"),
    ({"busy": {"dial": [N1] * 11}}, "fallbacks.busy"),
    ({"busy": {"message": " "}}, "fallbacks.busy"),
    ({"busy": {"dial": [N1, {"to": N2, "ring_timeout": 0}]}}, "fallbacks.busy.dial[1].ring_timeout"),
    ({"busy": {"dial": ["group:support"]}}, "fallbacks.busy.dial[0]"),
])
def test_parse_fallbacks_errors_name_the_field(value: Any, field_name: str) -> None:
    with pytest.raises(InvalidField) as info:
        parse_fallbacks(value, REGION, "fallbacks", group_exists)
    assert info.value.details == {"field": field_name}


def test_parse_group() -> None:
    group = parse_group("sales", {"agents": ["011 555 0301", AG2, "sip:agent@10.0.0.5"],
                                  "ring_timeout": 20, "calls_period_hours": 8,
                                  "fallbacks": {"all_busy": {"message": "Busy."}}}, REGION, group_exists)
    assert group == Group("sales", Strategy.ROUND_ROBIN, (AG1, AG2, "sip:agent@10.0.0.5"), 20, 8.0,
                          {Outcome.ALL_BUSY: Fallback(FallbackAction.MESSAGE, message="Busy.")})
    assert group.as_dict()["fallbacks"] == {"all_busy": {"message": "Busy."}}


@pytest.mark.parametrize(("name", "data", "field_name"), [
    ("sales team", {"agents": [AG1]}, "name"),
    ("", {"agents": [AG1]}, "name"),
    # Only a-z, 0-9, _ and -: no upper case, fullwidth or look-alike
    # letters, no dots.
    ("Sales", {"agents": [AG1]}, "name"),
    ("\uff53ales", {"agents": [AG1]}, "name"),  # fullwidth s
    ("s\u0430les", {"agents": [AG1]}, "name"),  # Cyrillic a
    ("sal\u0117s", {"agents": [AG1]}, "name"),
    ("..", {"agents": [AG1]}, "name"),
    ("sales.eu", {"agents": [AG1]}, "name"),
    ("x" * 65, {"agents": [AG1]}, "name"),
    ("sales\n", {"agents": [AG1]}, "name"),
    ("sales", {"agents": [AG1], "members": []}, "members"),
    ("sales", {"agents": [AG1], "strategy": "random"}, "strategy"),
    ("sales", {"agents": []}, "agents"),
    ("sales", {"agents": AG1}, "agents"),
    ("sales", {}, "agents"),
    ("sales", {"agents": [AG1, "011 555 0301"]}, "agents"),
    ("sales", {"agents": [f"+2711555030{i}" for i in range(10)] + ["+27115550310"],
               "strategy": "simultaneous"}, "agents"),
    ("sales", {"agents": [AG1], "calls_period_hours": 0}, "calls_period_hours"),
    ("sales", {"agents": [AG1], "calls_period_hours": True}, "calls_period_hours"),
    ("sales", {"agents": [AG1], "ring_timeout": 601}, "ring_timeout"),
    ("sales", {"agents": [AG1], "fallbacks": {"all_busy": {"dial": []}}}, "fallbacks.all_busy"),
])
def test_parse_group_errors_name_the_field(name: str, data: dict[str, Any], field_name: str) -> None:
    with pytest.raises(InvalidField) as info:
        parse_group(name, data, REGION, group_exists)
    assert info.value.details == {"field": field_name}


def test_group_names_of_a_to_z_digits_underscore_and_dash_up_to_64() -> None:
    for name in ("a", "sales_eu-2", "x" * 64, "0"):
        assert parse_group(name, {"agents": [AG1]}, REGION, group_exists).name == name


def test_a_queue_names_its_group_by_the_same_rule() -> None:
    with pytest.raises(InvalidField) as info:
        parse_fallbacks({"all_busy": {"queue": {"group": "Sales"}}}, REGION, "fallbacks",
                        group_exists)
    assert info.value.details == {"field": "fallbacks.all_busy.queue.group"}


def test_parse_group_bad_agent_names_the_agent() -> None:
    with pytest.raises(InvalidNumber) as info:
        parse_group("sales", {"agents": [AG1, "12"]}, REGION, group_exists)
    assert info.value.details == {"field": "agents[1]"}
