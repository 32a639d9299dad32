"""Whom to ring next for leg B: the answer to the core's ChooseTargets.

The router works through a queue of route entries: targets to ring, groups
to expand (by their strategy, at the moment they are reached, so an agent who
became busy meanwhile is skipped) and dial-whom URLs to ask. When the queue
is empty the route has run out: its fallback for how it ran out (no answer,
busy, failed, all agents busy) is taken once, or the call ends with a
message. Each target is rung at most once per call. Numbers the compliance
guards screen out (do-not-call, daily cap) are skipped where they come up: a
group's agents when it is expanded, a dial-whom answer when it arrives, any
attempt's targets just before it is made; the next attempt (or the reason the
route ran out) says which were skipped and why.

A group's agents are offered to one call at a time: an agent another live
call holds (:mod:`controller.routing.reservations`: its leg A, or a leg B
target ringing or answered) counts as busy, and the targets of each attempt
are held the moment they are chosen, with nothing awaited between the check
and the hold. Targets a request or a dial-whom URL names outright are held
too, but rung as asked.

Its whole memory is a JSON-able dict that the core keeps with the call
(``route_state``), so a restarted daemon carries on where it was.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from controller.calls.request import MAX_TARGETS, Outcome, Strategy
from controller.core.events import RouteExhausted, TargetsChosen
from controller.core.outcomes import CallStatus
from controller.core.plan import Attempt
from controller.routing.agents import AgentBook, order_agents
from controller.routing.dial_whom import DialWhomClient, DialWhomFailed
from controller.routing.reservations import Reservations
from controller.routing.spec import (
    GROUP_PREFIX,
    Fallback,
    FallbackAction,
    Group,
    QueueSpec,
    RouteItem,
    RouteSpec,
)

log = structlog.get_logger(__name__)

Speak = Callable[[str], Awaitable[str]]  # text -> audio path as the switch sees it
BusyTargets = Callable[[Sequence[str]], Awaitable[set[str]]]
# Tell leg A this text, then let it hold for up to n seconds.
Announce = Callable[[str, int], Awaitable[None]]
# Which of these targets must not be rung, each with the rule why.
Screen = Callable[[Sequence[str]], Awaitable[dict[str, str]]]
_SKIP_EVENTS = {"do-not-call": "route.dnc_skipped", "attempt-cap": "route.cap_skipped"}
QUEUE_POLL_SECONDS = 1.0
QUEUE_FULL_MESSAGE = "Sorry, all our agents are busy and the queue is full. Please call again later."
QUEUE_TIMEOUT_MESSAGE = "Sorry, no agent became free in time. Please call again later."


class CallQueues:
    """The callers waiting for each group, first come first served; one per
    controller, shared by every call's router."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[str]] = {}

    def join(self, group: str, call_id: str) -> None:
        waiting = self._waiting.setdefault(group, [])
        if call_id not in waiting:
            waiting.append(call_id)

    def leave(self, group: str, call_id: str) -> None:
        waiting = self._waiting.get(group, [])
        if call_id in waiting:
            waiting.remove(call_id)

    def size(self, group: str) -> int:
        return len(self._waiting.get(group, []))

    def position(self, group: str, call_id: str) -> int:
        """1 for the caller served next."""
        return self._waiting.get(group, []).index(call_id) + 1

_STATUS_OF_OUTCOME = {
    Outcome.NO_ANSWER: CallStatus.NO_ANSWER,
    Outcome.BUSY: CallStatus.BUSY,
    Outcome.ALL_BUSY: CallStatus.BUSY,
    Outcome.FAILED: CallStatus.FAILED,
}
# Dial-whom's DialCallStatus values for how the previous attempt ended.
_DIAL_CALL_STATUS = {"busy": "busy", "rejected": "busy", "no-answer": "no-answer",
                     "declined": "no-answer", "canceled": "canceled"}


@dataclass(frozen=True)
class CallContext:
    """What a dial-whom URL is told about the call, by the names hosted
    products use. Outbound: ``call_from`` is leg A and ``call_to`` the number
    the call is placed from (its caller ID); inbound: the caller and the
    number dialed, with the last gather's ``digits``."""

    call_id: str
    call_from: str
    call_to: str
    custom_field: str = ""
    direction: str = "outbound-dial"
    digits: str = ""

    @classmethod
    def inbound(cls, call_id: str, caller: str, dialed: str, digits: str = "",
                custom_field: str = "") -> CallContext:
        return cls(call_id, caller, dialed, custom_field, "incoming", digits)


class Router:
    def __init__(self, spec: RouteSpec, context: CallContext, *,
                 groups: Callable[[str], Group | None], agents: AgentBook,
                 busy_targets: BusyTargets, dial_whom: DialWhomClient, speak: Speak,
                 unreached_message: str, queues: CallQueues, announce: Announce,
                 reservations: Reservations, screen: Screen | None = None) -> None:
        self.spec = spec
        self.context = context
        self.groups = groups
        self.agents = agents
        self.busy_targets = busy_targets
        self.dial_whom = dial_whom
        self.speak = speak
        self.unreached_message = unreached_message
        self.queues = queues
        self.announce = announce
        self.reservations = reservations
        self.screen = screen

    async def next(self, previous: str | None,
                   state: Mapping[str, Any]) -> TargetsChosen | RouteExhausted:
        st = _copy(state) if state else self._initial_state()
        if previous is not None and st["url"] and self.spec.ask_again:
            # Ask again: the new answer replaces what is left of the last one.
            st["queue"] = [e for e in st["queue"] if e.get("source") != "dial-whom"]
            st["queue"].insert(0, {"url": st["url"], "ring_timeout": st["url_ring_timeout"]})
        while True:
            if previous is not None and st["count"] >= self.spec.max_attempts:
                return await self._exhausted(st, previous, f"{st['count']} attempts made, "
                                             f"the most this call allows")
            if not st["queue"]:
                fallback_or_end = await self._run_out(st, previous)
                if fallback_or_end is not None:
                    return fallback_or_end
                continue
            entry = st["queue"].pop(0)
            if "dial" in entry:
                targets = await self._screened(st, self._hold(st, entry), entry["source"])
                # Those screened out are let go.
                self.reservations.choose(self.context.call_id, targets)
                if not targets:
                    continue
                if "cursor" in entry:
                    await self.agents.set_group_cursor(entry["source"][len(GROUP_PREFIX):],
                                                       entry["cursor"])
                st["tried"] += targets
                st["count"] += 1
                st["all_busy"] = None
                st["last_dialed"] = targets[-1]
                skipped = tuple((s["target"], s["rule"]) for s in st.get("skipped", ()))
                st["skipped"] = []
                return TargetsChosen(time.time(), Attempt(tuple(targets), entry["ring_timeout"],
                                                          entry["source"], skipped), st)
            if "group" in entry:
                await self._expand_group(st, entry)
            else:
                await self._ask_dial_whom(st, entry, previous)

    # ------------------------------------------------------------ entries

    def _initial_state(self) -> dict[str, Any]:
        return {"queue": self._entries(self.spec.items, "request"), "tried": [], "count": 0,
                "used_fallbacks": [], "url": None, "url_ring_timeout": None,
                "all_busy": None, "last_group": None, "last_dialed": None}

    def _entries(self, items: Sequence[RouteItem], source: str) -> list[dict[str, Any]]:
        """Plain targets of a simultaneous route ring together; groups and
        URLs are expanded where they stand."""
        entries: list[dict[str, Any]] = []
        together: list[str] = []
        for item in items:
            if item.is_group:
                entries.append({"group": item.to[len(GROUP_PREFIX):],
                                "ring_timeout": item.ring_timeout})
            elif item.is_url:
                entries.append({"url": item.to, "ring_timeout": item.ring_timeout})
            elif self.spec.strategy is Strategy.SIMULTANEOUS:
                together.append(item.to)
            else:
                entries.append(self._dial([item.to], item.ring_timeout, source))
        if together:
            timeouts = [i.ring_timeout for i in items if i.to in together and i.ring_timeout]
            entries.insert(0, self._dial(together, max(timeouts, default=None), source))
        return entries

    def _dial(self, targets: list[str], ring_timeout: int | None, source: str) -> dict[str, Any]:
        return {"dial": targets, "ring_timeout": ring_timeout or self.spec.ring_timeout,
                "source": source}

    def _hold(self, st: dict[str, Any], entry: dict[str, Any]) -> list[str]:
        """The entry's targets not rung yet, held for this call; a group's
        agents that another call holds are left out. Nothing is awaited here:
        the check and the hold are one step."""
        targets = [t for t in entry["dial"] if t not in st["tried"]]
        if entry["source"].startswith(GROUP_PREFIX):
            taken = self.reservations.held_elsewhere(targets, self.context.call_id)
            if taken:
                log.info("route.agents_taken", source=entry["source"], taken=sorted(taken))
                targets = [t for t in targets if t not in taken]
                if not targets:
                    st["all_busy"] = entry["source"][len(GROUP_PREFIX):]
        self.reservations.choose(self.context.call_id, targets)
        return targets

    async def _expand_group(self, st: dict[str, Any], entry: dict[str, Any]) -> None:
        group = self.groups(entry["group"])
        if group is None:
            log.warning("route.group_gone", group=entry["group"])
            return
        st["last_group"] = group.name
        source = f"group:{group.name}"
        call_id = self.context.call_id
        states = await self.agents.agent_states(group.agents)
        busy = await self.busy_targets(group.agents)
        cursor = await self.agents.group_cursor(group.name)
        free = await self._screened(
            st, [a for a in order_agents(group, states, busy, cursor, time.time())
                 if a not in st["tried"]], source)
        # Agents another call holds are busy too. From here until next() holds
        # the first entry nothing is awaited, so no other call can take it.
        taken = self.reservations.held_elsewhere(free, call_id)
        order = [a for a in free if a not in taken]
        log.info("route.group", group=group.name, strategy=str(group.strategy), order=order,
                 busy=sorted(busy | taken | {a for a, s in states.items() if s.on_call}))
        if not order:
            st["all_busy"] = group.name
            return
        ring_timeout = entry["ring_timeout"] or group.ring_timeout
        if group.strategy is Strategy.SIMULTANEOUS:
            entries = [self._dial(order, ring_timeout, source)]
        else:
            entries = [self._dial([a], ring_timeout, source) for a in order]
        if group.strategy is Strategy.ROUND_ROBIN:
            # Stored once that agent is held (an await here would let another call in).
            entries[0]["cursor"] = group.agents.index(order[0])
        st["queue"][0:0] = entries

    async def _ask_dial_whom(self, st: dict[str, Any], entry: dict[str, Any],
                             previous: str | None) -> None:
        if self.spec.ask_again:
            st["url"], st["url_ring_timeout"] = entry["url"], entry["ring_timeout"]
        params = {
            "CallSid": self.context.call_id,
            "CallFrom": self.context.call_from,
            "CallTo": self.context.call_to,
            "CallStatus": "in-progress",
            "Direction": self.context.direction,
            "DialCallStatus": _DIAL_CALL_STATUS.get(previous or "", "failed") if previous else "",
            "DialWhomNumber": st["last_dialed"] or "",
            "Digits": self.context.digits,
            "CustomField": self.context.custom_field,
        }
        try:
            answer = await self.dial_whom.ask(entry["url"], self.spec.fallback_url, params)
        except DialWhomFailed as exc:
            st["dial_whom_error"] = exc.message
            return
        numbers = await self._screened(st, [n for n in answer.numbers if n not in st["tried"]],
                                       "dial-whom")
        if not numbers:
            st["dial_whom_error"] = f"{answer.url} returned no number left to ring"
            return
        st.pop("dial_whom_error", None)
        if self.spec.strategy is Strategy.SIMULTANEOUS:
            entries = [self._dial(numbers[:MAX_TARGETS], entry["ring_timeout"], "dial-whom")]
        else:
            entries = [self._dial([n], entry["ring_timeout"], "dial-whom") for n in numbers]
        st["queue"][0:0] = entries

    async def _screened(self, st: dict[str, Any], targets: list[str], source: str) -> list[str]:
        """The targets the compliance guards allow; the others are noted in
        the route state, for the next attempt or the route's end to report."""
        if self.screen is None or not targets:
            return targets
        skip = await self.screen(targets)
        for target in targets:
            if target in skip:
                log.info(_SKIP_EVENTS.get(skip[target], "route.skipped"), target=target,
                         rule=skip[target], source=source)
                st.setdefault("skipped", []).append(
                    {"target": target, "rule": skip[target], "source": source})
        return [t for t in targets if t not in skip]

    # ------------------------------------------------------------ running out

    async def _run_out(self, st: dict[str, Any], previous: str | None) -> RouteExhausted | None:
        """Take the fallback for how the route ran out (None: carry on with
        its targets), or end the call."""
        outcome = _outcome(st, previous)
        fallback = self.spec.fallbacks.get(outcome)
        group = self.groups(st["last_group"]) if st["last_group"] else None
        if fallback is None and group is not None:
            fallback = group.fallbacks.get(outcome)
        reason = _reason(st, outcome, previous)
        if st.get("skipped"):
            reason += "; skipped " + ", ".join(f"{s['target']} ({s['rule']})"
                                               for s in st["skipped"])
        if fallback is None or outcome in st["used_fallbacks"]:
            return await self._end(outcome, reason, self.unreached_message)
        st["used_fallbacks"].append(outcome)
        log.info("route.fallback", outcome=str(outcome), action=str(fallback.action))
        return await self._take(st, fallback, outcome, reason)

    async def _take(self, st: dict[str, Any], fallback: Fallback, outcome: Outcome,
                    reason: str) -> RouteExhausted | None:
        if fallback.action is FallbackAction.DIAL:
            st["queue"] = self._entries(fallback.to, f"fallback:{outcome}")
            st["url"] = None
            st["all_busy"] = None
            return None
        if fallback.queue is not None:
            return await self._wait_in_queue(st, fallback.queue, outcome)
        message = fallback.message if fallback.action is FallbackAction.MESSAGE else None
        return await self._end(outcome, reason, message)

    async def _wait_in_queue(self, st: dict[str, Any], queue: QueueSpec,
                             outcome: Outcome) -> RouteExhausted | None:
        """Hold the caller until it is first in line and an agent is free
        (None: ring that agent), or until the wait or the queue is too long."""
        group = self.groups(queue.group)
        call_id = self.context.call_id
        if group is None or self.queues.size(queue.group) >= queue.max_size:
            return await self._end(outcome, f"the queue for group {queue.group} is full",
                                   queue.message or QUEUE_FULL_MESSAGE)
        self.queues.join(queue.group, call_id)
        log.info("route.queued", group=queue.group, position=self.queues.position(
            queue.group, call_id))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + queue.max_wait
        next_announcement = loop.time()
        try:
            while loop.time() < deadline:
                position = self.queues.position(queue.group, call_id)
                if position == 1:
                    entry = {"group": queue.group, "ring_timeout": None}
                    await self._expand_group(st, entry)
                    if st["queue"]:
                        st["all_busy"] = None
                        return None
                if loop.time() >= next_announcement:
                    await self.announce(_position_text(position),
                                        int(deadline - loop.time()) + 10)
                    next_announcement += queue.announce_every
                await asyncio.sleep(QUEUE_POLL_SECONDS)
        finally:
            self.queues.leave(queue.group, call_id)
        return await self._end(outcome, f"waited {queue.max_wait} s in the queue for group "
                               f"{queue.group}", queue.message or QUEUE_TIMEOUT_MESSAGE)

    async def _exhausted(self, st: dict[str, Any], previous: str | None,
                         reason: str) -> RouteExhausted:
        return await self._end(_outcome(st, previous), reason, self.unreached_message)

    async def _end(self, outcome: Outcome, reason: str, message: str | None) -> RouteExhausted:
        audio = await self.speak(message) if message else None
        return RouteExhausted(time.time(), _STATUS_OF_OUTCOME[outcome], reason, audio)


def _position_text(position: int) -> str:
    if position == 1:
        return "All our agents are busy. You are next in line. Please hold."
    return f"All our agents are busy. You are number {position} in line. Please hold."


def _outcome(st: dict[str, Any], previous: str | None) -> Outcome:
    if st["all_busy"]:
        return Outcome.ALL_BUSY
    if previous in ("busy", "rejected"):
        return Outcome.BUSY
    if previous in ("no-answer", "declined", "canceled"):
        return Outcome.NO_ANSWER
    return Outcome.FAILED


def _reason(st: dict[str, Any], outcome: Outcome, previous: str | None) -> str:
    if outcome is Outcome.ALL_BUSY:
        return f"every agent of group {st['all_busy']} is busy"
    if previous is None:
        return st.get("dial_whom_error") or "no target to ring"
    return f"nobody more to ring; the last attempt was {previous} ({st['count']} attempts)"


def _copy(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, list) else v) for k, v in state.items()}
