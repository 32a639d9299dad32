"""The daemon as a workflow uses it: a real process on the real lab, driven
over HTTP, with real webhook receivers on loopback; killed and restarted."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from controller.store.sqlite import SqliteStore
from tests.conftest import StartReceiver, WebhookReceiver
from tests.lab.conftest import SIGNING_SECRET, DaemonProcess, api, wait_for_state
from tests.openapi_document import OPENAPI, OpenApiDocument

REPO = Path(__file__).resolve().parents[2]
LAB_CONFIG = REPO / "sip-lab" / "callconnect.toml"


@pytest.mark.lab
async def test_openapi_document_is_the_one_served(daemon: DaemonProcess) -> None:
    async with api(daemon) as client:
        served = (await client.get("/openapi.json")).json()
    assert served == json.loads(OPENAPI.read_text()), \
        "docs/openapi.json is stale: run `make openapi` and commit it"


@pytest.mark.lab
async def test_place_watch_list_and_fetch_the_recording(daemon: DaemonProcess) -> None:
    spec = OpenApiDocument()
    async with api(daemon) as client:
        started = time.time()
        response = await client.post("/v1/calls", json={
            "leg_a": "+27115550101", "leg_b": "011 555 0202", "time_limit": 3,
            "whisper": "Connecting you to John Smith from the website form",
            "metadata": {"crm_id": 42}})
        assert response.status_code == 202, response.text
        spec.check("post", "/v1/calls", response)
        accepted = response.json()
        assert accepted["success"] is True and accepted["leg_a_status"] == "initiated"
        assert accepted["leg_b_status"] == "pending" and accepted["recorded"] is True
        call_id = accepted["call_uuid"]

        live = await wait_for_state(client, call_id, "bridged")
        assert live["status"] is None and live["result"] is None

        ended = await wait_for_state(client, call_id, "ended")
        spec.check("get", "/v1/calls/{call_id}", await client.get(f"/v1/calls/{call_id}"))
        result = ended["result"]
        assert ended["status"] == "completed" and result["hangup_by"] == "time_limit"
        assert result["metadata"] == {"crm_id": 42}
        states = [item["data"]["to"] for item in ended["timeline"] if item["kind"] == "transition"]
        assert states == ["dialing-a", "ringing-a", "whispering", "dialing-b", "ringing-b",
                          "bridged", "ending", "ended"]

        listed = await client.get("/v1/calls", params={"created_after": started,
                                                       "status": "completed"})
        spec.check("get", "/v1/calls", listed)
        assert [c["call_uuid"] for c in listed.json()["calls"]] == [call_id]

        whole = await client.get(f"/v1/calls/{call_id}/recording")
        assert whole.status_code == 200 and whole.headers["content-type"] == "audio/wav"
        assert whole.content[:4] == b"RIFF" and len(whole.content) > 16000
        part = await client.get(f"/v1/calls/{call_id}/recording", headers={"Range": "bytes=0-99"})
        assert part.status_code == 206
        assert part.content == whole.content[:100]
        assert part.headers["content-range"] == f"bytes 0-99/{len(whole.content)}"

        metrics = (await client.get("/metrics")).text
        assert 'callconnect_calls_total{status="completed"} 1.0' in metrics
        assert 'callconnect_leg_setup_seconds_count{leg="b"} 1.0' in metrics


# Open to anyone: liveness for supervisors, counters for Prometheus, the API's shape;
# signed recording links, whose signature is their authority
# (tests/esl/test_esl_recording_links.py refuses altered and expired ones).
OPEN_PATHS = {"/status", "/metrics", "/v1/recordings/{call_id}"}


@pytest.mark.lab
async def test_a_missing_or_wrong_token_learns_nothing(daemon: DaemonProcess) -> None:
    """Every operation the API documents, on a real call's id, refuses a
    request without a valid token: call data and recordings are token-only."""
    async with api(daemon) as client:
        call_id = (await client.post("/v1/calls", json={
            "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 1})).json()["call_uuid"]
        await wait_for_state(client, call_id, "ended")
        assert (await client.get(f"/v1/calls/{call_id}/recording")).status_code == 200
    spec = OpenApiDocument()
    values = {"call_id": call_id, "number": "%2B27115550202", "name": "lab-desk",
              "event_id": "evt_0", "url_id": "0" * 32}
    operations = [(method, path) for path, methods in spec.spec["paths"].items()
                  if path not in OPEN_PATHS for method in methods]
    assert len(operations) >= 12, operations
    for token in (None, "wrong-token"):
        async with api(daemon, token) as client:
            for method, path in operations:
                url = path.format(**values)
                response = await client.request(method.upper(), url, json={})
                assert response.status_code == 401, f"{method} {url}: {response.status_code}"
                assert response.json() == {"error_id": "unauthorized",
                                           "message": "a valid bearer token is required",
                                           "details": {}}
                spec.check(method, path, response)
    async with api(daemon, None) as client:
        status = await client.get("/status")
    assert status.status_code == 200 and status.json()["components"]["switch"]["status"] == "ok"


@pytest.mark.lab
async def test_idempotency_key_returns_the_first_call(daemon: DaemonProcess) -> None:
    async with api(daemon) as client:
        started = time.time()
        body = {"leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 1}
        first = await client.post("/v1/calls", json=body, headers={"Idempotency-Key": "order-77"})
        second = await client.post("/v1/calls", json=body, headers={"Idempotency-Key": "order-77"})
        assert first.status_code == second.status_code == 202
        assert second.headers["Idempotency-Replayed"] == "true"
        OpenApiDocument().check("post", "/v1/calls", second)
        assert first.json()["call_uuid"] == second.json()["call_uuid"]
        # The same key with another body is refused, and dials nothing.
        other = await client.post("/v1/calls", json={**body, "time_limit": 2},
                                  headers={"Idempotency-Key": "order-77"})
        assert other.status_code == 422, other.text
        assert other.json()["error_id"] == "idempotency-key-reused"
        assert other.json()["details"]["call_id"] == first.json()["call_uuid"]
        await wait_for_state(client, first.json()["call_uuid"], "ended")
        listed = await client.get("/v1/calls", params={"created_after": started})
        assert len(listed.json()["calls"]) == 1


@pytest.mark.lab
@pytest.mark.parametrize(("body", "error_id", "field"), [
    ({"leg_a": "0800FLOWERS", "leg_b": "+27115550202"}, "invalid-number", "leg_a"),
    ({"leg_a": "+27115550101", "leg_b": "011 555 0101"}, "same-legs", None),
    ({"leg_a": "+27115550101", "leg_b": "+27115550202", "ring_timeout": 0},
     "invalid-field", "ring_timeout"),
    ({"leg_a": "+27115550101", "leg_b": "+27115550202", "colour": "red"}, "invalid-field", "colour"),
    ({"leg_b": "+27115550202"}, "invalid-field", "leg_a"),
    ({"leg_a": "+27115550101", "leg_b": "+27115550202", "webhook_events": ["hung-up"]},
     "invalid-field", "webhook_events[0]"),
])
async def test_bad_requests_name_the_field_and_dial_nothing(
        daemon: DaemonProcess, body: dict[str, Any], error_id: str, field: str | None) -> None:
    spec = OpenApiDocument()
    async with api(daemon) as client:
        response = await client.post("/v1/calls", json=body)
        assert response.status_code == 400, response.text
        spec.check("post", "/v1/calls", response)
        error = response.json()
        assert error["error_id"] == error_id
        if field:
            assert error["details"]["field"] == field and field in error["message"]
        assert (await client.get("/v1/calls")).json()["calls"] == []


@pytest.mark.lab
async def test_hangup_cancels_a_ringing_call(daemon: DaemonProcess) -> None:
    async with api(daemon) as client:
        call_id = (await client.post("/v1/calls", json={
            "leg_a": "+27115550301", "leg_b": "+27115550202"})).json()["call_uuid"]
        await wait_for_state(client, call_id, "ringing-a")
        assert (await client.post(f"/v1/calls/{call_id}/hangup")).status_code == 202
        ended = await wait_for_state(client, call_id, "ended")
        assert ended["status"] == "canceled" and ended["result"]["hangup_by"] == "api"
        again = await client.post(f"/v1/calls/{call_id}/hangup")
        assert again.status_code == 409 and again.json()["error_id"] == "call-ended"
        missing = await client.get("/v1/calls/no-such-call")
        assert missing.status_code == 404 and missing.json()["error_id"] == "call-not-found"


async def deliveries(receiver: WebhookReceiver, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.bodies) < count:
        assert time.monotonic() < deadline, f"got {len(receiver.bodies)} of {count} webhooks"
        await asyncio.sleep(0.05)


async def place_then_kill(start_daemon: Callable[..., DaemonProcess], body: dict[str, Any],
                          state: str, before_kill: Callable[[], Awaitable[None]] | None = None,
                          ) -> str:
    """Place a call on a fresh daemon, wait until it reaches ``state`` (and
    ``before_kill``), then SIGKILL the daemon. Returns the call's id."""
    daemon = start_daemon()
    await daemon.ready()
    async with api(daemon) as client:
        call_id: str = (await client.post("/v1/calls", json=body)).json()["call_uuid"]
        await wait_for_state(client, call_id, state)
    if before_kill is not None:
        await before_kill()
    daemon.signal(signal.SIGKILL)
    daemon.wait(10)
    return call_id


@pytest.mark.lab
async def test_status_callbacks_and_a_retried_signed_completion(
        daemon: DaemonProcess, webhook_receiver: StartReceiver) -> None:
    statuses = await webhook_receiver()
    flaky = await webhook_receiver([503, 503, 503])
    async with api(daemon) as client:
        call_id = (await client.post("/v1/calls", json={
            "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 1,
            "webhook_url": statuses.url,
            "webhook_events": ["initiated", "ringing", "answered", "bridged", "completed"]},
        )).json()["call_uuid"]
        await deliveries(statuses, 7)
        second = (await client.post("/v1/calls", json={
            "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 1,
            "webhook_url": flaky.url})).json()["call_uuid"]
        await deliveries(flaky, 4)
    types = [(b["type"], b["data"].get("leg")) for b in statuses.bodies]
    assert types == [("call.initiated", "a"), ("call.ringing", "a"), ("call.answered", "a"),
                     ("call.ringing", "b"), ("call.answered", "b"), ("call.bridged", "b"),
                     ("call.completed", None)]
    assert all(b["data"]["call_uuid"] == call_id for b in statuses.bodies)
    # Three failures, then one delivery: the same event id every time, signed.
    assert len({h["webhook-id"] for h in flaky.headers}) == 1
    assert flaky.bodies[-1]["data"]["call_uuid"] == second
    verified = Webhook(SIGNING_SECRET).verify(flaky.raw_bodies[-1], flaky.headers[-1])
    assert verified["data"]["status"] == "completed"
    await asyncio.sleep(1.0)
    assert len(flaky.bodies) == 4, "a delivered webhook is not sent again"


@pytest.mark.lab
async def test_a_410_disables_the_url(daemon: DaemonProcess, webhook_receiver: StartReceiver) -> None:
    gone = await webhook_receiver([410])
    async with api(daemon) as client:
        for _ in range(2):
            call_id = (await client.post("/v1/calls", json={
                "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 1,
                "webhook_url": gone.url})).json()["call_uuid"]
            await wait_for_state(client, call_id, "ended")
        deadline = time.monotonic() + 10
        metrics = ""
        while 'callconnect_webhook_deliveries_total{outcome="disabled"} 2.0' not in metrics:
            assert time.monotonic() < deadline, metrics
            await asyncio.sleep(0.1)
            metrics = (await client.get("/metrics")).text
    assert len(gone.bodies) == 1, "nothing is sent to a URL after it answered 410"


@pytest.mark.lab
async def test_sigkill_mid_call_then_restart_follows_the_call(
        start_daemon: Callable[..., DaemonProcess], webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    call_id = await place_then_kill(start_daemon, {
        "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 6,
        "webhook_url": receiver.url}, "bridged")
    second = start_daemon()
    await second.ready()
    async with api(second) as client:
        ended = await wait_for_state(client, call_id, "ended")
    assert ended["status"] == "completed"
    assert ended["result"]["hangup_by"] == "time_limit"
    assert ended["result"]["talk_seconds"] == pytest.approx(6, abs=1)
    await deliveries(receiver, 1)
    await asyncio.sleep(0.5)
    assert [b["type"] for b in receiver.bodies] == ["call.completed"]


@pytest.mark.lab
async def test_a_call_that_ended_while_the_daemon_was_down_is_closed_right(
        start_daemon: Callable[..., DaemonProcess], webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    call_id = await place_then_kill(start_daemon, {
        "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 2,
        "webhook_url": receiver.url}, "bridged")
    await asyncio.sleep(4)  # the time limit ends the call while nobody listens
    second = start_daemon()
    await second.ready()
    async with api(second) as client:
        ended = await wait_for_state(client, call_id, "ended")
    assert ended["status"] == "completed"
    assert "ended while the controller was away from the switch" in ended["result"]["reason"]
    assert ended["result"]["talk_seconds"] == pytest.approx(2, abs=1)
    await deliveries(receiver, 1)
    assert receiver.bodies[0]["data"]["call_uuid"] == call_id


@pytest.mark.lab
async def test_a_webhook_not_yet_delivered_survives_a_crash(
        start_daemon: Callable[..., DaemonProcess], webhook_receiver: StartReceiver) -> None:
    failing = await webhook_receiver([503] * 1000)
    await place_then_kill(start_daemon, {
        "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 1,
        "webhook_url": failing.url}, "ended", before_kill=lambda: deliveries(failing, 1))
    event_id = failing.headers[0]["webhook-id"]
    tried = len(failing.bodies)
    failing.answers.clear()  # the receiver recovers while the daemon is down
    second = start_daemon()
    await second.ready()
    await deliveries(failing, tried + 1)
    assert failing.headers[-1]["webhook-id"] == event_id
    assert Webhook(SIGNING_SECRET).verify(failing.raw_bodies[-1], failing.headers[-1])


@pytest.mark.lab
async def test_sigterm_drains_a_live_call(start_daemon: Callable[..., DaemonProcess],
                                          tmp_path: Path) -> None:
    daemon = start_daemon()
    await daemon.ready()
    async with api(daemon) as client:
        call_id = (await client.post("/v1/calls", json={
            "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 3})).json()["call_uuid"]
        await wait_for_state(client, call_id, "bridged")
        daemon.signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        refused = await client.post("/v1/calls", json={"leg_a": "+27115550101",
                                                       "leg_b": "+27115550202"})
        assert refused.status_code == 503 and refused.json()["error_id"] == "draining"
        status = await client.get("/status")
        assert status.json()["draining"] is True
    assert await asyncio.to_thread(daemon.wait, 30) == 0
    store = SqliteStore(str(tmp_path / "callconnect.sqlite3"))
    await store.open()
    stored = await store.get_call(call_id)
    await store.close()
    assert stored is not None and stored.status == "completed"
    assert stored.result is not None and stored.result["talk_seconds"] == pytest.approx(3, abs=1)


@pytest.mark.lab
async def test_switch_unreachable_reports_fail_and_refuses_calls(
        start_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = start_daemon(CALLCONNECT_ASTERISK_PORT="5999", CALLCONNECT_ASTERISK_CONNECT_TIMEOUT="1")
    # Until its first attempt fails the daemon says "not connected yet".
    status = await daemon.ready(
        want=503, until=lambda body: "5999" in body["components"]["switch"].get("reason", ""))
    assert status["components"]["switch"]["status"] == "fail"
    assert status["components"]["store"]["status"] == "ok"
    async with api(daemon) as client:
        refused = await client.post("/v1/calls", json={"leg_a": "+27115550101",
                                                       "leg_b": "+27115550202"})
    assert refused.status_code == 503 and refused.json()["error_id"] == "switch-unavailable"


@pytest.mark.lab
async def test_calls_over_the_rate_limit_are_refused_with_429(
        start_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = start_daemon(CALLCONNECT_API_MAX_CALLS_PER_SECOND="1")
    await daemon.ready()
    spec = OpenApiDocument()
    body = {"leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 1}
    async with api(daemon) as client:
        first = await client.post("/v1/calls", json=body)
        second = await client.post("/v1/calls", json=body)
        assert first.status_code == 202
        assert second.status_code == 429, second.text
        spec.check("post", "/v1/calls", second)
        assert second.json()["error_id"] == "rate-limited"
        assert second.headers["Retry-After"] == "1"
        ended = await wait_for_state(client, first.json()["call_uuid"], "ended")
        assert ended["status"] == "completed"
        assert len((await client.get("/v1/calls")).json()["calls"]) == 1
