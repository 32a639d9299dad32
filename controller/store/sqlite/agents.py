"""Agent state and round-robin positions in SQLite: the routing strategies'
:class:`~controller.routing.agents.AgentBook`."""

from __future__ import annotations

import time
from collections.abc import Sequence

from controller.routing.agents import AgentState
from controller.store.sqlite.connection import SqliteDatabase

# Agent call history older than this is dropped (least-calls periods are shorter).
AGENT_HISTORY_SECONDS = 31 * 86400


class SqliteAgents(SqliteDatabase):
    """:class:`~controller.routing.agents.AgentBook` in SQLite."""

    async def agent_states(self, targets: Sequence[str]) -> dict[str, AgentState]:
        states = {t: AgentState(t) for t in targets}
        if not states:
            return states
        marks = ",".join("?" * len(states))
        async with self._use("reading agent state", write=False) as db:
            for row in await db.execute_fetchall(
                    f"SELECT target, on_call, last_ended_at FROM agents WHERE target IN ({marks})",
                    tuple(states)):
                states[row["target"]].on_call = row["on_call"]
                states[row["target"]].last_ended_at = row["last_ended_at"]
            # Rows past the history an agent's next call prunes are not its history.
            for row in await db.execute_fetchall(
                    f"SELECT target, at FROM agent_calls WHERE target IN ({marks}) AND at >= ?",
                    (*states, time.time() - AGENT_HISTORY_SECONDS)):
                states[row["target"]].calls.append(row["at"])
        return states

    async def agent_call_started(self, target: str, call_id: str, at: float) -> None:
        async with self._use("saving agent state", write=True) as db:
            await db.execute("INSERT INTO agents (target, on_call) VALUES (?, ?) "
                             "ON CONFLICT (target) DO UPDATE SET on_call = excluded.on_call",
                             (target, call_id))
            await db.execute("INSERT OR IGNORE INTO agent_calls (target, call_id, at) "
                             "VALUES (?, ?, ?)", (target, call_id, at))
            # This agent's old calls only: found by its index, where every
            # agent's would be a scan of the whole history at every call.
            await db.execute("DELETE FROM agent_calls WHERE target = ? AND at < ?",
                             (target, at - AGENT_HISTORY_SECONDS))

    async def agent_call_ended(self, target: str, call_id: str, at: float) -> None:
        async with self._use("saving agent state", write=True) as db:
            await db.execute(
                "INSERT INTO agents (target, last_ended_at) VALUES (?, ?) "
                "ON CONFLICT (target) DO UPDATE SET last_ended_at = excluded.last_ended_at, "
                "on_call = CASE WHEN on_call = ? THEN NULL ELSE on_call END",
                (target, at, call_id))

    async def group_cursor(self, group: str) -> int:
        async with self._use("reading a group's position", write=False) as db:
            rows = list(await db.execute_fetchall(
                "SELECT position FROM group_cursors WHERE name = ?", (group,)))
        return int(rows[0]["position"]) if rows else -1

    async def set_group_cursor(self, group: str, index: int) -> None:
        async with self._use("saving a group's position", write=True) as db:
            await db.execute("INSERT INTO group_cursors (name, position) VALUES (?, ?) "
                             "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                             (group, index))
