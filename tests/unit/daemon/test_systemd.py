"""When the daemon pings systemd's watchdog, read from the environment
systemd gives it (sd_watchdog_enabled(3))."""

from __future__ import annotations

import pytest

from controller.daemon.systemd import watchdog_interval

PID = 4242


@pytest.mark.parametrize(("environ", "interval"), [
    ({"WATCHDOG_USEC": "30000000"}, 15.0),  # half of WatchdogSec=30
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(PID)}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process is watched
    ({}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "thirty"}, None),
])
def test_the_ping_interval_is_half_the_watchdog_timeout(environ: dict[str, str],
                                                         interval: float | None) -> None:
    assert watchdog_interval(environ, PID) == interval
