"""Retention in the real daemon: at start it deletes the old ended calls and
recordings a store and a folder hold (their ages set through the store and
file mtimes), keeps the rest, and counts them in /metrics. The switch is
down: retention does not wait for it."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx

from controller.store.sqlite import SqliteStore
from tests.api.switch_down import serving, switch_down_env
from tests.lab.conftest import DaemonProcess, api, log_events
from tests.unit.store.builders import make_call

DAY = 86400.0


async def test_the_daemon_prunes_old_calls_and_recordings_and_keeps_new_ones(tmp_path: Path) -> None:
    now = time.time()
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    await store.create_call(make_call("old", now - 40 * DAY, state="ended", status="completed"))
    await store.create_call(make_call("new", now - DAY, state="ended", status="completed"))
    await store.close()
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    for name, days in (("old", 40), ("new", 1)):
        (recordings / f"{name}.wav").write_bytes(b"RIFF")
        os.utime(recordings / f"{name}.wav", (now - days * DAY, now - days * DAY))
    daemon = DaemonProcess(tmp_path / "store.sqlite3", tmp_path / "daemon.log", switch_down_env(
        tmp_path, CALLCONNECT_RETENTION_CALLS_DAYS="30", CALLCONNECT_RETENTION_RECORDINGS_DAYS="30"))
    daemon.start()
    try:
        serving(daemon)
        async with asyncio.timeout(30):
            while not log_events(daemon, "retention.pruned"):
                await asyncio.sleep(0.1)
        async with api(daemon) as client:
            old, new = [(await client.get(f"/v1/calls/{name}")).status_code
                        for name in ("old", "new")]
        assert (old, new) == (404, 200)
        metrics = httpx.get(f"{daemon.url}/metrics", timeout=5).text
    finally:
        daemon.stop()
    [line] = log_events(daemon, "retention.pruned")
    assert (line["calls"], line["recordings"]) == (1, 1), line
    assert 'callconnect_pruned_total{kind="calls"} 1.0' in metrics
    assert 'callconnect_pruned_total{kind="recordings"} 1.0' in metrics
    assert sorted(p.name for p in recordings.iterdir()) == ["new.wav"]
