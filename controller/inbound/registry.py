"""The numbers the controller answers: the config's, which only the config
file changes, then the ones made over the API, which the daemon keeps in its
store. All of them are held in memory, so an arriving call is looked up
without a store read."""

from __future__ import annotations

import time
from collections.abc import Mapping

import structlog

from controller.errors import InvalidField, InvalidRequest, NumberFromConfig
from controller.inbound.numbers import (
    MAX_NUMBER_CHARS,
    Number,
    NumberSettings,
    number_of,
    parse_number,
)
from controller.numbers import normalize_number
from controller.outbound import OutboundConfig
from controller.store import NumberStore

log = structlog.get_logger(__name__)


class NumberRegistry:
    def __init__(self, region: str, outbound: OutboundConfig, configured: Mapping[str, Number],
                 store: NumberStore) -> None:
        self.region = region
        self.outbound = outbound
        self.store = store
        self._numbers: dict[str, Number] = dict(configured)

    async def load(self) -> None:
        """The numbers made over the API, from the store; a stored one that
        no longer passes the rules (they, or the config, changed) is logged
        and left out, and a call to it is refused as to any unknown number."""
        for number, data in (await self.store.list_numbers()).items():
            if number in self._numbers:  # the config took it over since
                log.warning("number.shadowed_by_config", number=number)
                continue
            try:
                self._numbers[number] = parse_number(
                    number, NumberSettings.model_validate(data), self.region, self.outbound)
            except (InvalidRequest, ValueError) as exc:  # ValueError: pydantic's
                log.error("number.invalid_in_store", number=number, error=str(exc))

    def number(self, text: str) -> str:
        """``text`` as a number in E.164; InvalidRequest if it is not one."""
        return number_of(text, self.region)

    def get(self, number: str) -> Number | None:
        """The settings of ``number`` (E.164)."""
        return self._numbers.get(number)

    def dialed(self, text: str) -> Number | None:
        """The number a call arrived for, as the switch names it; None when
        it is not one the controller answers (or not a number at all)."""
        try:
            return self._numbers.get(normalize_number(text[:MAX_NUMBER_CHARS], self.region))
        except InvalidRequest:
            return None

    def page(self, after: str | None, limit: int) -> tuple[list[Number], str | None]:
        """The numbers in order after ``after``, at most ``limit``, and the
        cursor of the next page (None on the last)."""
        if after is not None and not after.startswith("+"):
            raise InvalidField("cursor is not one this API gave out: use next_cursor as given",
                               field="cursor")
        numbers = sorted(n for n in self._numbers if after is None or n > after)
        page = [self._numbers[n] for n in numbers[:limit]]
        return page, (page[-1].number if len(numbers) > limit else None)

    async def put(self, number: str, settings: NumberSettings) -> Number:
        """Create or replace a number (E.164) made over the API; InvalidRequest
        if bad, NumberFromConfig if the config file has it."""
        self._refuse_config(number, "change it there")
        parsed = parse_number(number, settings, self.region, self.outbound)
        await self.store.put_number(number, settings.model_dump(mode="json"), time.time())
        self._numbers[number] = parsed
        log.info("number.saved", number=number, incoming_url=bool(settings.incoming_url),
                 actions=len(settings.actions))
        return parsed

    async def delete(self, number: str) -> bool:
        """False if there is no such number; NumberFromConfig if the config file has it."""
        if number not in self._numbers:
            return False
        self._refuse_config(number, "remove it there")
        await self.store.delete_number(number)
        del self._numbers[number]
        log.info("number.deleted", number=number)
        return True

    def _refuse_config(self, number: str, hint: str) -> None:
        existing = self._numbers.get(number)
        if existing is not None and existing.source == "config":
            raise NumberFromConfig(f"number {number} comes from the config file; {hint}",
                                   number=number)
