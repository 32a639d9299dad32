"""Agent state for group strategies, and the order a group's agents are rung in.

An agent is any target that answered leg B: its state follows real call
outcomes (on a call from the moment it answers, idle from the call's end).
The switch is asked as well, so an agent busy on a call placed by other means
is not rung (see ``Backend.busy_targets``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from controller.calls.request import Strategy
from controller.routing.spec import Group


@dataclass
class AgentState:
    target: str
    on_call: str | None = None  # the call id it is on, if any
    last_ended_at: float | None = None  # when its last call ended
    calls: list[float] = field(default_factory=list)  # when its calls started

    def calls_since(self, since: float) -> int:
        return sum(1 for at in self.calls if at >= since)


class AgentBook(Protocol):
    """Where agent state and round-robin positions live (the daemon's store)."""

    async def agent_states(self, targets: Sequence[str]) -> dict[str, AgentState]:
        """State of each target; an agent never seen has a fresh state."""

    async def agent_call_started(self, target: str, call_id: str, at: float) -> None: ...

    async def agent_call_ended(self, target: str, call_id: str, at: float) -> None: ...

    async def group_cursor(self, group: str) -> int:
        """Round robin: the index of the agent rung first last time (-1: none)."""

    async def set_group_cursor(self, group: str, index: int) -> None: ...


class MemoryAgentBook:
    """Agent state for one process (the command line); the daemon keeps it in
    its store."""

    def __init__(self) -> None:
        self._agents: dict[str, AgentState] = {}
        self._cursors: dict[str, int] = {}

    async def agent_states(self, targets: Sequence[str]) -> dict[str, AgentState]:
        return {t: self._agents.get(t, AgentState(t)) for t in targets}

    async def agent_call_started(self, target: str, call_id: str, at: float) -> None:
        state = self._agents.setdefault(target, AgentState(target))
        state.on_call = call_id
        state.calls.append(at)

    async def agent_call_ended(self, target: str, call_id: str, at: float) -> None:
        state = self._agents.setdefault(target, AgentState(target))
        if state.on_call == call_id:
            state.on_call = None
        state.last_ended_at = at

    async def group_cursor(self, group: str) -> int:
        return self._cursors.get(group, -1)

    async def set_group_cursor(self, group: str, index: int) -> None:
        self._cursors[group] = index


def order_agents(group: Group, states: dict[str, AgentState], busy: set[str], cursor: int,
                 now: float) -> list[str]:
    """The group's free agents in the order its strategy rings them.

    ``busy`` are agents the switch reports in use; ``cursor`` is the round
    robin's last first agent. Ties keep the group's own (priority) order.
    """
    free = [a for a in group.agents if a not in busy and states[a].on_call is None]
    if group.strategy is Strategy.ROUND_ROBIN:
        start = (cursor + 1) % len(group.agents)
        rotated = group.agents[start:] + group.agents[:start]
        return [a for a in rotated if a in free]
    if group.strategy is Strategy.LONGEST_IDLE:
        # Never-called agents have been idle longest of all.
        return sorted(free, key=lambda a: states[a].last_ended_at or 0.0)
    if group.strategy is Strategy.LEAST_CALLS:
        since = now - group.calls_period_hours * 3600
        return sorted(free, key=lambda a: states[a].calls_since(since))
    return free
