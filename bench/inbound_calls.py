"""The inbound lanes' calls as the switch saw them: each caller's channel,
read from the AMI events of a bare observer (the switch's own clock), and a
step's figures from them.

A caller's channel is the bench's when its Newchannel names one of the
bench's numbers. Then, on the same clock:

* arrival: its Newchannel (the switch took the INVITE);
* answered: its first Newstate Up;
* first action: its first Newexten running Playback (both lanes' first
  action plays the same file: the control lane's dialplan, or the
  controller's play in callconnect-play);
* hung up: its Hangup, with the cause.

A call completed when all four happened and the switch hung up normally
(cause 16), as both lanes end every call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .common import percentile

NORMAL_CLEARING = "16"
FIRST_ACTION = "Playback"
UP = "6"  # ChannelState of an answered channel


@dataclass
class CallerChannel:
    number: str  # the number dialed
    arrived: float  # switch time, seconds
    answered: float | None = None
    first_action: float | None = None
    hung_up: float | None = None
    cause: str = ""

    @property
    def completed(self) -> bool:
        return (self.answered is not None and self.first_action is not None
                and self.hung_up is not None and self.cause == NORMAL_CLEARING)

    @property
    def failure(self) -> str | None:
        """How a call that did not complete ended; None for one that did."""
        if self.completed:
            return None
        if self.hung_up is None:
            return "still up"
        if self.answered is None:
            return f"never answered, cause {self.cause}"
        if self.first_action is None:
            return f"answered without its first action, cause {self.cause}"
        return f"cause {self.cause}"

    @property
    def answer_to_action_ms(self) -> float | None:
        if self.answered is None or self.first_action is None:
            return None
        return (self.first_action - self.answered) * 1000

    @property
    def arrival_to_action_ms(self) -> float | None:
        if self.first_action is None:
            return None
        return (self.first_action - self.arrived) * 1000


@dataclass
class ChannelLog:
    """The bench's callers' channels, in order of arrival, from the AMI
    events fed in (a Mapping of the event's headers)."""

    numbers: frozenset[str]
    channels: dict[str, CallerChannel] = field(default_factory=dict)  # Uniqueid -> channel
    order: list[str] = field(default_factory=list)

    def feed(self, event: Mapping[str, str]) -> None:
        name, uniqueid = event.get("Event"), event.get("Uniqueid", "")
        try:
            at = float(event.get("Timestamp", ""))
        except ValueError:
            return  # the lab's AMI stamps every event (timestampevents); this is not ours
        if name == "Newchannel":
            if event.get("Exten") in self.numbers and uniqueid not in self.channels:
                self.channels[uniqueid] = CallerChannel(event["Exten"], at)
                self.order.append(uniqueid)
            return
        channel = self.channels.get(uniqueid)
        if channel is None:
            return
        if name == "Newstate" and event.get("ChannelState") == UP and channel.answered is None:
            channel.answered = at
        elif (name == "Newexten" and event.get("Application") == FIRST_ACTION
              and channel.first_action is None):
            channel.first_action = at
        elif name == "Hangup":
            channel.hung_up, channel.cause = at, event.get("Cause", "")

    def since(self, mark: int, number: str) -> list[CallerChannel]:
        """The channels to ``number`` that arrived after the ``mark``-th."""
        return [c for key in self.order[mark:] if (c := self.channels[key]).number == number]


def latency_percentiles(values: Iterable[float | None]) -> dict[str, float | None]:
    measured = [v for v in values if v is not None]
    return {name: None if (p := percentile(measured, q)) is None else round(p, 2)
            for name, q in (("p50", 0.5), ("p99", 0.99))}


@dataclass
class InboundStep:
    lane: str  # "control" (the dialplan alone) or "controller" (the daemon's number)
    rate: float
    offered: int
    completed: int
    success: float
    answer_to_action_ms: dict[str, float | None]  # p50, p99
    arrival_to_action_ms: dict[str, float | None]
    cpu_ms_per_call: float | None = None  # the controller's (controller lane)
    switch_cpu_ms_per_call: float | None = None  # Asterisk's, both lanes
    failures: dict[str, int] = field(default_factory=dict)  # how the others ended -> calls


def inbound_step(lane: str, rate: float, offered: int,
                 channels: list[CallerChannel]) -> InboundStep:
    """A step's figures from its callers' channels. A call that never reached
    the switch has no channel, and counts as offered and not completed."""
    completed = sum(1 for c in channels if c.completed)
    failures: dict[str, int] = {}
    for failure in (c.failure for c in channels):
        if failure is not None:
            failures[failure] = failures.get(failure, 0) + 1
    if offered > len(channels):
        failures["never reached the switch"] = offered - len(channels)
    return InboundStep(lane, rate, offered, completed,
                       round(completed / offered, 4) if offered else 0.0,
                       latency_percentiles(c.answer_to_action_ms for c in channels),
                       latency_percentiles(c.arrival_to_action_ms for c in channels),
                       failures=failures)
