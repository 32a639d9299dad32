"""Calls as the real daemon answers them (GET /v1/calls, GET /v1/calls/{id}):
each request and result exactly as stored, in UTF-8, newest first, paged
with cursors; a row an older version wrote with values orjson does not take
(an integer beyond 64 bits) too. The switch is down: listing needs none."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from controller.store import StoredCall, TimelineEntry
from controller.store.sqlite import SqliteStore
from tests.api.switch_down import serving, switch_down_env
from tests.lab.conftest import DaemonProcess, api

REQUEST = {"leg_a": "+27115550101", "leg_b": "+27115550202",
           "metadata": {"crm": "Ünïcode ✓ 東京", "n": [1, 2.5, None, True]}}
RESULT = {"status": "completed", "talk_seconds": 8.25, "recording": None}
HUGE = 2 ** 70  # beyond 64 bits: orjson refuses it, the standard library wrote it


async def stored_calls(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        for number in range(5):
            await store.create_call(StoredCall(
                call_id=f"call-{number}", created_at=1000.0 + number, updated_at=1001.0 + number,
                state="ended", status="completed", request=REQUEST,
                snapshot={"state": "ended", "direction": "outbound"}, result=RESULT))
        await store.save_call(
            StoredCall(call_id="call-4", created_at=1004.0, updated_at=1005.0, state="ended",
                       status="completed", request=REQUEST, snapshot={"state": "ended"},
                       result=RESULT),
            [TimelineEntry("call-4", 1004.5, "transition", {"to": "ended", "by": "Zoë"})], [])
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as db, db:  # as an older version wrote it
        db.execute("UPDATE calls SET request = ? WHERE call_id = 'call-0'",
                   (f'{{"leg_a": "+27115550101", "metadata": {{"big": {HUGE}}}}}',))


def listed(page: dict[str, Any]) -> list[tuple[str, float, dict[str, Any], dict[str, Any]]]:
    return [(c["call_uuid"], c["created_at"], c["request"], c["result"]) for c in page["calls"]]


async def test_pages_and_a_call_carry_what_was_stored(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    await stored_calls(path)
    daemon = DaemonProcess(path, tmp_path / "daemon.log", switch_down_env(tmp_path))
    daemon.start()
    try:
        serving(daemon)
        async with api(daemon) as client:
            first = await client.get("/v1/calls", params={"limit": 3})
            rest = await client.get("/v1/calls", params={"limit": 3,
                                                         "cursor": first.json()["next_cursor"]})
            one = await client.get("/v1/calls/call-4")
    finally:
        daemon.stop()
    assert first.status_code == 200 and first.headers["content-type"] == "application/json"
    assert "Ünïcode ✓ 東京".encode() in first.content  # UTF-8, not escaped
    assert listed(first.json()) == [(f"call-{n}", 1000.0 + n, REQUEST, RESULT) for n in (4, 3, 2)]
    old_row = {"leg_a": "+27115550101", "metadata": {"big": HUGE}}
    assert listed(rest.json()) == [("call-1", 1001.0, REQUEST, RESULT),
                                   ("call-0", 1000.0, old_row, RESULT)]
    assert rest.json()["next_cursor"] is None
    assert one.status_code == 200
    call = one.json()
    assert (call["request"], call["result"], call["timeline"]) == (
        REQUEST, RESULT, [{"at": 1004.5, "kind": "transition", "data": {"to": "ended", "by": "Zoë"}}])
