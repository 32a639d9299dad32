"""Redirects held until their channel is in a wait (see transit.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from .transit import ChannelTransit

log = structlog.get_logger(__name__)


class RedirectGate:
    def __init__(self, timeout: float) -> None:
        """``timeout``: seconds a Redirect waits at most; then it goes anyway."""
        self._timeout = timeout
        self._transit = ChannelTransit()
        # Channel -> resolved when it leaves transit: the Redirects held for it.
        self._settling: dict[str, asyncio.Future[None]] = {}
        # Set when a Redirect waited in vain and the account's eventfilter had
        # passed no Newexten of a wait at all: Redirects then go at once.
        self._wait_events_missing = False

    def observe(self, message: Mapping[str, str]) -> None:
        settled = self._transit.observe(message)
        if settled is not None:
            waiting = self._settling.pop(settled, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(None)

    async def send(self, channel: str, redirect: Callable[[], Awaitable[Any]]) -> Any:
        """Await ``redirect()`` (its AMI answer) once the channel is out of
        transit. The channel is in transit from then on, unless Asterisk
        refused the Redirect or gave no answer."""
        await self._until_settled(channel)
        self._transit.redirected(channel)
        try:
            response = await redirect()
        except BaseException:
            self._transit.not_redirected(channel)
            raise
        if not response.success:
            self._transit.not_redirected(channel)
        return response

    async def _until_settled(self, channel: str) -> None:
        """Until the channel is out of transit, or the timeout."""
        if not self._transit.in_transit(channel) \
                or (self._wait_events_missing and not self._transit.waits_seen):
            return
        settled = self._settling.get(channel)
        if settled is None:
            settled = self._settling[channel] = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(settled), self._timeout)
            return
        except TimeoutError:
            self._settling.pop(channel, None)
            self._transit.not_redirected(channel)
        if self._transit.waits_seen:
            log.warning("ami.redirect.unsettled", channel=channel, waited=self._timeout)
            return
        self._wait_events_missing = True
        log.error("ami.redirect.no_wait_events", channel=channel, waited=self._timeout,
                  reason="the AMI account is sent no Newexten of the dialplan's waits, so a "
                         "Redirect may land between two applications and lose the call; "
                         "add `dialplan` to its read classes and the Newexten eventfilter "
                         "of dialplans/asterisk/manager_callconnect.conf, then run "
                         "`asterisk -rx 'manager reload'`")

    def reset(self) -> None:
        """The link was lost: where channels are is not known; nothing waits."""
        self._transit.clear()
        settling, self._settling = self._settling, {}
        for settled in settling.values():
            if not settled.done():
                settled.set_result(None)
