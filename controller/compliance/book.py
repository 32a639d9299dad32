"""Where compliance state lives: numbers put on the do-not-call list over the
API, and the calls placed to each number (for the daily cap). The daemon keeps
them in its store; the command line, which has none, in memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from controller.compliance.dnc import API, DncEntry

# Calls older than this are no longer counted by any cap; older rows are dropped.
ATTEMPT_WINDOW_SECONDS = 86400


class ComplianceBook(Protocol):
    async def dnc_entries(self, numbers: Sequence[str]) -> dict[str, DncEntry]:
        """Those of ``numbers`` put on the list over the API."""

    async def put_dnc(self, number: str, reason: str, at: float) -> DncEntry:
        """Add or update a number (keeping when it was first added)."""

    async def delete_dnc(self, number: str) -> bool:
        """False if it was not on the list."""

    async def list_dnc(self, after: str | None, limit: int) -> list[DncEntry]:
        """Numbers after ``after`` in order, at most ``limit``."""

    async def record_attempts(self, call_id: str, numbers: Sequence[str], at: float) -> None:
        """These numbers were called by this call (each counted once per call)."""

    async def attempts_since(self, numbers: Sequence[str], since: float) -> dict[str, list[float]]:
        """When each of ``numbers`` was called after ``since``, oldest first."""


class MemoryComplianceBook:
    def __init__(self) -> None:
        self._dnc: dict[str, DncEntry] = {}
        self._attempts: dict[tuple[str, str], float] = {}

    async def dnc_entries(self, numbers: Sequence[str]) -> dict[str, DncEntry]:
        return {n: self._dnc[n] for n in numbers if n in self._dnc}

    async def put_dnc(self, number: str, reason: str, at: float) -> DncEntry:
        first = self._dnc.get(number)
        entry = DncEntry(number, reason, API, first.added_at if first else at)
        self._dnc[number] = entry
        return entry

    async def delete_dnc(self, number: str) -> bool:
        return self._dnc.pop(number, None) is not None

    async def list_dnc(self, after: str | None, limit: int) -> list[DncEntry]:
        numbers = sorted(n for n in self._dnc if after is None or n > after)
        return [self._dnc[n] for n in numbers[:limit]]

    async def record_attempts(self, call_id: str, numbers: Sequence[str], at: float) -> None:
        for number in numbers:
            self._attempts.setdefault((number, call_id), at)

    async def attempts_since(self, numbers: Sequence[str], since: float) -> dict[str, list[float]]:
        return {n: sorted(at for (number, _), at in self._attempts.items()
                          if number == n and at > since) for n in numbers}
