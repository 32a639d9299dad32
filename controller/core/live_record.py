"""The record of a live call: what it keeps beyond a call connect (its
direction and numbers, every action with its outcome, the digits gathered),
its result and its snapshot. The flow's handlers are :mod:`controller.core.live`.

Each action has one record, kept in the order it was queued::

    {"id", "type", "spec", "status", "outcome", "reason",
     "queued_at", "started_at", "ended_at", "source"}

``status`` is queued, running, completed, failed, dropped (never run: replaced,
or the call ended first) or canceled (running when the call ended). A gather's
record adds ``digits``, ``ended_by`` and ``tries``; a connect's ``attempts``
(its own attempts at leg B); a record start's ``file``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Self

from controller.core.commands import Command, Report
from controller.core.machine import CallConnect
from controller.core.plan import PreparedAction
from controller.core.record import plan_of

Direction = Literal["inbound", "outbound"]

# What a snapshot says to tell a live call from a call connect.
FLOW_KEY = "flow"
LIVE_FLOW = "live"

FINISHED = frozenset({"completed", "failed", "dropped", "canceled"})


def prepared_snapshot(action: PreparedAction) -> dict[str, Any]:
    data = asdict(action)
    data["audio"] = list(action.audio)
    return data


def prepared_of(data: dict[str, Any]) -> PreparedAction:
    connect = data["connect"]
    return PreparedAction(data["id"], data["type"], data["spec"], tuple(data["audio"]),
                          data["record_file"], plan_of({"plan": connect}) if connect else None)


@dataclass(kw_only=True)
class LiveRecord(CallConnect):
    direction: Direction
    from_: str  # the caller (inbound), or the number the call is placed from (outbound)
    to: str  # the number dialed (inbound), or leg A (outbound)
    idle_timeout: int = 30
    # Every action ever queued, in order: see the module's docstring.
    actions: list[dict[str, Any]] = field(default_factory=list)
    # What the switch needs of the actions not finished yet, by id.
    prepared: dict[str, PreparedAction] = field(default_factory=dict)
    digits: str | None = None  # the last gather's digits
    # Why the number's incoming_url gave no actions, if it did not.
    incoming_error: str | None = None
    # Where the running connect's attempts begin in ``attempts``.
    connect_from: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        # Status callbacks made while handling one event, sent after its
        # switch commands and before the call's end.
        self._reports: list[Command] = []

    # ------------------------------------------------------------ actions

    @property
    def running_action(self) -> PreparedAction | None:
        """The action being carried out, or None (idle, or not started yet)."""
        record = self._running()
        return self.prepared[record["id"]] if record else None

    def _running(self) -> dict[str, Any] | None:
        return next((r for r in self.actions if r["status"] == "running"), None)

    def _queued(self) -> list[dict[str, Any]]:
        return [r for r in self.actions if r["status"] == "queued"]

    def _queue(self, at: float, actions: tuple[PreparedAction, ...], source: str) -> None:
        for action in actions:
            self.prepared[action.id] = action
            self.actions.append({
                "id": action.id, "type": action.type, "spec": action.spec, "status": "queued",
                "outcome": None, "reason": None, "queued_at": at, "started_at": None,
                "ended_at": None, "source": source})

    def _drop_queued(self, at: float, reason: str) -> None:
        for record in self._queued():
            record.update(status="dropped", reason=reason, ended_at=at)
            self.prepared.pop(record["id"], None)

    def _finish(self, at: float, record: dict[str, Any], status: str,
                outcome: str | None = None, reason: str | None = None) -> None:
        """Close a running action and report it."""
        record.update(status=status, ended_at=at)
        if outcome is not None:
            record["outcome"] = outcome
        if reason is not None:
            record["reason"] = reason
        if record["type"] == "connect":
            record["attempts"] = [dict(a) for a in self.attempts[self.connect_from:]]
        self.prepared.pop(record["id"], None)
        self._report("call.action.completed", dict(record))

    def _report(self, event: str, data: dict[str, Any]) -> None:
        self._reports.append(Report(event, {"call_uuid": self.plan.call_id, **data}))

    def _take_reports(self) -> list[Command]:
        reports, self._reports = self._reports, []
        return reports

    def _about(self) -> dict[str, Any]:
        """What a URL asked for actions, and a status callback, are told of the call."""
        return {"call_uuid": self.plan.call_id, "direction": self.direction, "from": self.from_,
                "to": self.to, "state": str(self.state), "digits": self.digits}

    # ------------------------------------------------------------ result and snapshot

    def result(self) -> dict[str, Any]:
        return {
            **super().result(),
            "direction": self.direction,
            "from": self.from_,
            "to": self.to,
            "actions": self.actions,
            "digits": self.digits,
            "incoming_error": self.incoming_error,
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            **super().snapshot(),
            FLOW_KEY: LIVE_FLOW,
            "direction": self.direction,
            "from": self.from_,
            "to": self.to,
            "idle_timeout": self.idle_timeout,
            "actions": self.actions,
            "prepared": [prepared_snapshot(a) for a in self.prepared.values()],
            "digits": self.digits,
            "incoming_error": self.incoming_error,
            "connect_from": self.connect_from,
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> Self:
        call = cls(plan_of(data), created_at=data["created_at"], direction=data["direction"],
                   from_=data["from"], to=data["to"], idle_timeout=data["idle_timeout"])
        call._restore(data)
        call.actions = data["actions"]
        call.prepared = {a["id"]: prepared_of(a) for a in data["prepared"]}
        call.digits = data["digits"]
        call.incoming_error = data["incoming_error"]
        call.connect_from = data["connect_from"]
        return call
