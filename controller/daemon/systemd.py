"""systemd's notify protocol (``Type=notify``): READY (with a STATUS), STOPPING and
the watchdog's pings. Outside systemd (no ``NOTIFY_SOCKET``) each is a no-op.

READY means the daemon serves: its store is open and its API listens. The
switch link is not part of it: it is reported by /status and the metrics, and
the daemon reconnects by itself for as long as it runs, so a switch that is
down does not make systemd restart the daemon over and over.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import sdnotify
import structlog

log = structlog.get_logger(__name__)


class Systemd:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._notifier = sdnotify.SystemdNotifier()
        self.watchdog_interval = watchdog_interval(environ, os.getpid())
        self._ready = asyncio.Event()

    def ready(self, status: str) -> None:
        self._notifier.notify(f"READY=1\nSTATUS={status}")
        self._ready.set()

    def stopping(self) -> None:
        self._notifier.notify("STOPPING=1")

    async def keep_alive(self) -> None:
        """Ping the watchdog (``WatchdogSec=``) from READY until cancelled. The
        pings come from the event loop itself, so a loop that is stuck stops
        them and systemd restarts the daemon."""
        if self.watchdog_interval is None:
            return
        await self._ready.wait()  # systemd watches from READY on
        log.info("systemd.watchdog", ping_every=self.watchdog_interval)
        while True:
            self._notifier.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between pings: half of ``WATCHDOG_USEC``, as sd_watchdog_enabled(3)
    advises; None when there is no watchdog, or it watches another process."""
    usec = environ.get("WATCHDOG_USEC", "")
    watched = environ.get("WATCHDOG_PID", "")
    if not usec or (watched and watched != str(pid)):
        return None
    try:
        timeout = int(usec)
    except ValueError:
        log.warning("systemd.watchdog_ignored", reason="WATCHDOG_USEC is not a number",
                    watchdog_usec=usec[:32])
        return None
    return timeout / 2_000_000 if timeout > 0 else None
