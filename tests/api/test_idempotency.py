"""Idempotency keys on the real daemon process, without a lab: its switch
points at a port nobody listens on, so calls are asked for outside their
calling window with ``outside_calling_hours: "schedule"``, which the daemon
stores (with their key) without dialing anything.

A key belongs to the token that sent it and is bound to the request body:
the same key, token and body replay the first call; another body gets 422
``idempotency-key-reused``; another token gets a call of its own. The store
keeps hashes, never a token."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.api.switch_down import serving, switch_down_env
from tests.lab.conftest import DaemonProcess

FIRST_TOKEN, SECOND_TOKEN = "api-token-first-7f3a", "api-token-second-91c4"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("api-idempotency")
    process = DaemonProcess(tmp / "store.sqlite3", tmp / "daemon.log", switch_down_env(
        tmp, CALLCONNECT_API_TOKENS=f"{FIRST_TOKEN},{SECOND_TOKEN}"))
    process.start()
    serving(process)
    yield process
    process.stop()


def body(**fields: Any) -> dict[str, Any]:
    """A call outside its window (it opens in two hours in leg A's zone), to be scheduled."""
    hour = datetime.now(ZoneInfo("Africa/Johannesburg")).hour
    return {"leg_a": "+27115550101", "leg_b": "+27115550202", "record": False,
            "calling_hours": f"{(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00",
            "outside_calling_hours": "schedule", **fields}


def post(daemon: DaemonProcess, token: str, key: str, payload: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{daemon.url}/v1/calls", json=payload, timeout=10,
                      headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key})


def test_the_same_key_token_and_body_replay_the_first_call(daemon: DaemonProcess) -> None:
    payload = body(metadata={"order": "77"})
    first = post(daemon, FIRST_TOKEN, "order-77", payload)
    assert first.status_code == 202, first.text
    assert first.json()["state"] == "scheduled" and "Idempotency-Replayed" not in first.headers
    # The same body with its keys in another order and other spacing is the same request.
    reordered = dict(reversed(list(payload.items())))
    again = post(daemon, FIRST_TOKEN, "order-77", reordered)
    assert again.status_code == 202, again.text
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.json()["call_uuid"] == first.json()["call_uuid"]


def test_the_same_key_with_another_body_is_refused(daemon: DaemonProcess) -> None:
    first = post(daemon, FIRST_TOKEN, "order-78", body(metadata={"order": "78"}))
    assert first.status_code == 202, first.text
    other = post(daemon, FIRST_TOKEN, "order-78", body(metadata={"order": "79"}))
    assert other.status_code == 422, other.text
    error = other.json()
    assert error["error_id"] == "idempotency-key-reused"
    assert error["details"]["call_id"] == first.json()["call_uuid"]
    assert "Idempotency-Replayed" not in other.headers
    calls = httpx.get(f"{daemon.url}/v1/calls", params={"status": "scheduled"}, timeout=10,
                      headers={"Authorization": f"Bearer {FIRST_TOKEN}"}).json()["calls"]
    assert [c["request"]["metadata"] for c in calls if c["request"]["idempotency_key"] ==
            "order-78"] == [{"order": "78"}]


def test_the_same_key_from_another_token_is_another_call(daemon: DaemonProcess) -> None:
    payload = body(metadata={"order": "80"})
    first = post(daemon, FIRST_TOKEN, "order-80", payload)
    second = post(daemon, SECOND_TOKEN, "order-80", payload)
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert "Idempotency-Replayed" not in second.headers
    assert second.json()["call_uuid"] != first.json()["call_uuid"]
    # Each token still gets its own call back.
    again = post(daemon, SECOND_TOKEN, "order-80", payload)
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.json()["call_uuid"] == second.json()["call_uuid"]


def test_the_store_keeps_no_token(daemon: DaemonProcess) -> None:
    assert post(daemon, SECOND_TOKEN, "order-81", body()).status_code == 202
    store = Path(daemon.env["CALLCONNECT_STORE_PATH"])
    for path in (store, store.with_name(store.name + "-wal")):
        if path.exists():
            data = path.read_bytes()
            assert FIRST_TOKEN.encode() not in data and SECOND_TOKEN.encode() not in data
