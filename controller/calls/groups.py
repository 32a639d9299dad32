"""Agent groups by name: the config's, which only the config file changes,
then the ones made over the API, which the daemon keeps in its store."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import structlog

from controller.errors import GroupFromConfig, InvalidRequest
from controller.routing.spec import Group, parse_group

log = structlog.get_logger(__name__)


class GroupStore(Protocol):
    async def list_groups(self) -> dict[str, dict[str, Any]]: ...

    async def put_group(self, name: str, data: dict[str, Any]) -> None: ...

    async def delete_group(self, name: str) -> bool: ...


class GroupRegistry(Mapping[str, Group]):
    def __init__(self, region: str, configured: Mapping[str, Group],
                 store: GroupStore | None = None) -> None:
        self.region = region
        self.store = store  # None: the command line, which has only the config's
        self._groups: dict[str, Group] = dict(configured)

    def __getitem__(self, name: str) -> Group:
        return self._groups[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._groups)

    def __len__(self) -> int:
        return len(self._groups)

    async def load(self) -> None:
        """The groups made over the API, from the store; a stored group that
        no longer parses (the rules changed) is logged and left out."""
        if self.store is None:
            return
        for name, data in (await self.store.list_groups()).items():
            try:
                self._groups[name] = self._parse(name, data)
            except InvalidRequest as exc:
                log.error("group.invalid_in_store", group=name, error=exc.message)

    async def put(self, name: str, data: dict[str, Any]) -> Group:
        """Create or replace a group made over the API; InvalidRequest if bad,
        GroupFromConfig if the config file has it."""
        existing = self._groups.get(name)
        if existing is not None and existing.source == "config":
            raise GroupFromConfig(f"group {name} comes from the config file; change it there",
                                  group=name)
        group = self._parse(name, data)
        if self.store is not None:
            await self.store.put_group(name, data)
        self._groups[name] = group
        log.info("group.saved", group=name, strategy=str(group.strategy), agents=len(group.agents))
        return group

    async def delete(self, name: str) -> bool:
        """False if there is no such group; GroupFromConfig if the config file has it."""
        existing = self._groups.get(name)
        if existing is None:
            return False
        if existing.source == "config":
            raise GroupFromConfig(f"group {name} comes from the config file; remove it there",
                                  group=name)
        if self.store is not None:
            await self.store.delete_group(name)
        del self._groups[name]
        log.info("group.deleted", group=name)
        return True

    def _parse(self, name: str, data: dict[str, Any]) -> Group:
        # A group may name itself (a queue fallback that waits for its own agents).
        return parse_group(name, data, self.region,
                           lambda other: other in self._groups or other == name)
