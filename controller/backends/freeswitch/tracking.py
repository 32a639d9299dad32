"""What the translator knows of each call it follows: which channels are the
call's (Leg A, and every Leg B channel of every attempt), what the current
attempt asks of the one that answers, and how far the call has got. The
backend tells it what it is about to do (a dial, a playback); the translator
updates it from the call's events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from controller.core.outcomes import Leg

from .ids import b_leg_index, leg_uuid, originate_job_uuid
from .steps import AnswerSteps


class PlaybackKind(StrEnum):
    WHISPER = "whisper"
    MESSAGE = "message"


class StepKind(StrEnum):
    """A live call's step on leg A (see ``live.py``)."""

    PLAY = "play"
    GATHER = "gather"
    PAUSE = "pause"
    RECORD_START = "record-start"
    RECORD_STOP = "record-stop"


@dataclass
class LiveStep:
    """The step leg A runs now: ``app`` with ``data`` (None: any, after a
    restart) does it; its end is reported once the hold limit queued behind
    it has run (``done``: the application completed)."""

    kind: StepKind
    action_id: str
    app: str
    data: str | None
    max_digits: int = 0
    finish_key: str = ""
    pressed: str = ""  # keys reported so far (a gather)
    done: bool = False
    played: bool = False  # a play: the file played to its end
    digits: str = ""  # a gather: what read left
    ended_by: str = ""
    recording: bool = False  # a record step: RECORD_START seen (start), or not stopped


@dataclass
class BLeg:
    call_id: str
    target: str
    created: bool = False
    answered_at: float | None = None
    hung_up: bool = False  # LegHungUp reported
    ended: bool = False


@dataclass
class Dial:
    """One attempt at Leg B: its channels in dial order and what it asks."""

    legs: list[str]
    steps: AnswerSteps | None = None
    winner: str | None = None  # the channel that answered first (steps) or was bridged
    bridged: bool = False
    reported: bool = False  # DialFinished sent
    decided: bool = False  # accepted (right key) or declined
    prompts: int = 0  # times the confirm file started on the winner
    waiting: bool = False  # a WaitForKey was sent


@dataclass
class FollowedCall:
    playbacks: dict[str, PlaybackKind] = field(default_factory=dict)  # path -> kind
    a_going: bool = False  # leg A's CHANNEL_HANGUP was seen
    a_hung_up: bool = False
    a_ended: bool = False
    dial: Dial | None = None
    b_legs: list[str] = field(default_factory=list)  # every Leg B channel, every attempt
    a_channel: str | None = None  # a claimed incoming channel (else leg A's id is ours)
    a_answered: bool = False
    # Leg A answered (its time) and is not parked yet: see _CHANNEL_PARK.
    a_answer_unreported: float | None = None
    step: LiveStep | None = None
    idle: bool = False  # waiting for actions: the switch's hangup is the idle timeout


class CallTracker:
    """Our calls and their channels, by id."""

    def __init__(self) -> None:
        self._calls: dict[str, FollowedCall] = {}
        self._a: dict[str, str] = {}  # leg A channel -> call id
        self._b: dict[str, BLeg] = {}  # leg B channel -> its leg
        self._jobs: dict[str, str] = {}

    def watch(self, call_id: str) -> None:
        self._calls[call_id] = FollowedCall()
        self._a[leg_uuid(call_id, Leg.A)] = call_id
        self._jobs[originate_job_uuid(call_id)] = call_id

    def forget(self, call_id: str) -> None:
        call = self._calls.pop(call_id, None)
        for channel in [c for c, owner in self._a.items() if owner == call_id]:
            del self._a[channel]
        if call is not None:
            for channel in call.b_legs:
                self._b.pop(channel, None)
        self._jobs.pop(originate_job_uuid(call_id), None)

    def watched(self) -> list[str]:
        return list(self._calls)

    def adopt(self, call_id: str, leg: Leg, channel: str, target: str = "",
              steps: AnswerSteps | None = None) -> None:
        """A channel of ours known by other means than a dial we sent (after a
        restart, or replaying older wire text)."""
        call = self._calls.get(call_id)
        if call is None:
            return
        if leg is Leg.A:
            self._a[channel] = call_id
            return
        if channel not in self._b:
            self._b[channel] = BLeg(call_id, target, created=True)
            call.b_legs.append(channel)
        if call.dial is None:
            call.dial = Dial([], steps)
        if channel not in call.dial.legs:
            call.dial.legs.append(channel)

    def claim(self, call_id: str, channel: str) -> None:
        """Leg A of the call is this incoming channel."""
        call = self._calls.get(call_id)
        if call is not None:
            call.a_channel = channel
            self._a[channel] = call_id

    def a_channel(self, call_id: str) -> str | None:
        """Leg A's channel when it is a claimed incoming one."""
        call = self._calls.get(call_id)
        return call.a_channel if call is not None else None

    def a_answered(self, call_id: str) -> bool:
        call = self._calls.get(call_id)
        return call is not None and call.a_answered

    def answered_before_park(self, call_id: str, at: float) -> None:
        """Leg A, which we originated, answered at ``at`` and is not in park()
        yet (its CHANNEL_ANSWER, or a restart's ``uuid_dump``); it is
        reported answered once it is (CHANNEL_PARK)."""
        call = self._calls.get(call_id)
        if call is not None:
            call.a_answered = True
            call.a_answer_unreported = at

    def resume_live(self, call_id: str, answered: bool, idle: bool) -> None:
        """After a restart: leg A of a live call is answered or not, and
        waits for actions or runs a step."""
        call = self._calls.get(call_id)
        if call is not None:
            call.a_answered = answered
            call.idle = idle

    def expect_step(self, call_id: str, step: LiveStep | None, idle: bool = False) -> None:
        """Leg A is about to run ``step`` (None: none), or to wait for actions."""
        call = self._calls.get(call_id)
        if call is not None:
            call.step = step
            call.idle = idle

    def expect_dial(self, call_id: str, legs: list[tuple[str, str]],
                    steps: AnswerSteps | None) -> None:
        """Leg B is about to be dialed: these channels (id, target), in dial
        order, all at once; the first to answer wins."""
        call = self._calls.get(call_id)
        if call is None:
            return
        self._close_dial(call)
        call.dial = Dial([channel for channel, _ in legs], steps)
        for channel, target in legs:
            self._b[channel] = BLeg(call_id, target)
            call.b_legs.append(channel)

    def channels(self, call_id: str) -> list[str]:
        """Every channel id of ours in the call (for event filters)."""
        call = self._calls.get(call_id)
        if call is None:
            return []
        return [c for c, owner in self._a.items() if owner == call_id] + list(call.b_legs)

    def b_channels(self, call_id: str) -> list[str]:
        """Leg B channels that may be up: created or still to be created."""
        call = self._calls.get(call_id)
        if call is None:
            return []
        return [c for c in call.b_legs if c in self._b and not self._b[c].ended]

    def next_b_index(self, call_id: str) -> int:
        call = self._calls.get(call_id)
        indexes = [b_leg_index(call_id, c) for c in (call.b_legs if call else [])]
        return max((i for i in indexes if i is not None), default=-1) + 1

    def siblings(self, call_id: str, channel: str) -> list[str]:
        """The other channels of the current attempt that are still ringing."""
        call = self._calls.get(call_id)
        if call is None or call.dial is None:
            return []
        return [c for c in call.dial.legs
                if c != channel and c in self._b and not self._b[c].ended]

    def answer_steps(self, call_id: str) -> AnswerSteps | None:
        """What the current attempt asks of the Leg B that answers."""
        call = self._calls.get(call_id)
        return call.dial.steps if call is not None and call.dial is not None else None

    def declined_channel(self, call_id: str) -> str | None:
        """The Leg B channel that answered and was just declined."""
        call = self._calls.get(call_id)
        if call is None or call.dial is None or call.dial.bridged:
            return None
        return call.dial.winner

    def resume(self, call_id: str, bridged: bool, winner: str | None = None) -> None:
        """After a restart: what is known of the call already (Leg B bridged;
        the Leg B channel that answered)."""
        call = self._calls.get(call_id)
        if call is None:
            return
        if call.dial is None:
            call.dial = Dial([])
        if winner is not None:
            call.dial.winner = winner
        if bridged:
            call.dial.bridged = call.dial.reported = call.dial.decided = True

    def expect_playback(self, call_id: str, path: str, kind: PlaybackKind) -> None:
        """Leg A is about to play ``path``: its end means ``kind`` finished."""
        call = self._calls.get(call_id)
        if call is not None:
            call.playbacks[path] = kind

    def call_of(self, event: Mapping[str, str]) -> str | None:
        """Which of our calls a channel event is about, if any."""
        channel = event.get("Unique-ID", "")
        b = self._b.get(channel)
        return b.call_id if b is not None else self._a.get(channel)

    # ------------------------------------------------------------ whose event

    def _a_owner(self, event: Mapping[str, str]) -> tuple[str, FollowedCall] | None:
        call_id = self._a.get(event.get("Unique-ID", ""))
        call = self._calls.get(call_id) if call_id is not None else None
        if call_id is None or call is None:
            return None
        return call_id, call

    def _b_owner(self, event: Mapping[str, str]) -> tuple[str, FollowedCall, BLeg, str] | None:
        channel = event.get("Unique-ID", "")
        b = self._b.get(channel)
        call = self._calls.get(b.call_id) if b is not None else None
        if b is None or call is None:
            return None
        return b.call_id, call, b, channel

    def _close_dial(self, call: FollowedCall) -> None:
        """The dial is over: a leg FreeSWITCH never created (no such user, no
        gateway) never will be."""
        if call.dial is None:
            return
        for channel in call.dial.legs:
            leg = self._b.get(channel)
            if leg is not None and not leg.created:
                leg.ended = True
