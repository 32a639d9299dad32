"""The webhook outbox, with the real SQLite store and real loopback receivers."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import time
from pathlib import Path

import pytest
import structlog
from standardwebhooks import Webhook

from controller.errors import ConfigError
from controller.outbound import OutboundConfig
from controller.store import DeliveryState, DueDelivery, StoredCall, WebhookDelivery
from controller.store.sqlite import SqliteStore
from controller.webhooks.envelope import envelope
from controller.webhooks.outbox import Outbox
from tests.conftest import StartReceiver
from tests.unit.conftest import Clock

SECRET = "whsec_" + base64.b64encode(b"callconnect-test-signing-key-32b").decode()
UNREACHABLE = "http://127.0.0.1:9/hook?token=s3cret"
WAIT = 5.0  # the most a test waits for something that should happen at once
# The receivers here run on 127.0.0.1.
LOOPBACK_ALLOWED = OutboundConfig(allow_private=True)


async def enqueue(store: SqliteStore, url: str, event_id: str = "evt_1", *,
                  created_at: float | None = None) -> WebhookDelivery:
    """A delivery saved the way the daemon saves one: with its call, due now."""
    at = time.time() if created_at is None else created_at
    call = StoredCall(call_id=f"call-{event_id}", created_at=at, updated_at=at, state="ended",
                      status="completed", request={}, snapshot={}, result={"status": "completed"})
    await store.create_call(call)
    delivery = WebhookDelivery(
        event_id=event_id, call_id=call.call_id, url=url, event_type="call.completed",
        payload=envelope("call.completed", {"status": "completed", "name": "Zoë"}, at),
        created_at=at, next_attempt_at=at)
    await store.save_call(call, [], [delivery])
    return delivery


async def test_delivered_once(store: SqliteStore, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([200])
    clock = Clock()
    results: list[WebhookDelivery] = []
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, timeout=2, on_result=results.append, clock=clock)
    delivery = await enqueue(store, receiver.url, created_at=clock.now)
    outcome = await outbox.attempt(delivery)
    await outbox.stop()

    assert outcome.state is DeliveryState.DELIVERED
    assert (outcome.attempts, outcome.last_status_code, outcome.delivered_at) == (1, 200, clock.now)
    assert await store.deliveries(delivery.call_id) == [outcome] == results
    assert await store.due_deliveries(clock.now + 1e6, 10) == []
    [raw] = receiver.raw_bodies
    [headers] = receiver.headers
    # Compact UTF-8, as signed.
    assert raw == json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "evt_1"
    assert headers["webhook-timestamp"] == str(int(clock.now))
    assert "webhook-signature" not in headers  # no secret configured


async def whole(store: SqliteStore, due: DueDelivery) -> WebhookDelivery:
    delivery = await store.get_delivery(due.event_id)
    assert delivery is not None
    return delivery


async def test_retried_until_delivered_with_one_id_and_valid_signatures(
        store: SqliteStore, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([503, 503, 503])
    clock = Clock()
    outbox = Outbox(store, SECRET, outbound=LOOPBACK_ALLOWED, timeout=2, base_delay=5.0, clock=clock)
    delivery = await enqueue(store, receiver.url, created_at=clock.now)
    for attempt in (1, 2, 3):
        # The due query hands the delivery out again only once its retry time has come.
        [due] = await store.due_deliveries(clock.now, 10)
        delivery = await outbox.attempt(await whole(store, due))
        assert delivery.state is DeliveryState.PENDING
        assert (delivery.attempts, delivery.last_status_code) == (attempt, 503)
        assert delivery.last_error == "HTTP 503"
        assert clock.now + 1 <= delivery.next_attempt_at <= clock.now + max(1.0, 5.0 * 2 ** (attempt - 1))
        assert await store.due_deliveries(delivery.next_attempt_at - 0.001, 10) == []
        clock.now = delivery.next_attempt_at
    [due] = await store.due_deliveries(clock.now, 10)
    delivered = await outbox.attempt(await whole(store, due))
    await outbox.stop()

    assert delivered.state is DeliveryState.DELIVERED and delivered.attempts == 4
    assert receiver.webhook_ids == ["evt_1"] * 4
    for raw, headers in zip(receiver.raw_bodies, receiver.headers, strict=True):
        assert Webhook(SECRET).verify(raw, headers) == delivery.payload
    assert len({headers["webhook-signature"] for headers in receiver.headers}) == 4  # fresh timestamps


@pytest.mark.parametrize(("retry_after", "expected_delay"), [
    ("120", 120.0),
    ("HTTP-DATE+120", 120.0),
    ("99999", 3600.0),  # capped at max_delay
    ("0", 1.0),  # never sooner than a second
])
async def test_retry_after_sets_the_next_attempt(store: SqliteStore, webhook_receiver: StartReceiver,
                                                 retry_after: str, expected_delay: float) -> None:
    clock = Clock()
    if retry_after.startswith("HTTP-DATE"):
        retry_after = email.utils.formatdate(clock.now + 120, usegmt=True)
    receiver = await webhook_receiver([429], retry_after=retry_after)
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, timeout=2, max_delay=3600.0, clock=clock)
    outcome = await outbox.attempt(await enqueue(store, receiver.url, created_at=clock.now))
    await outbox.stop()
    assert outcome.state is DeliveryState.PENDING and outcome.last_status_code == 429
    assert outcome.next_attempt_at == pytest.approx(clock.now + expected_delay, abs=1.0)


@pytest.mark.parametrize("status", [400, 404, 301])
async def test_other_answers_are_final(store: SqliteStore, webhook_receiver: StartReceiver,
                                       status: int) -> None:
    receiver = await webhook_receiver([status])
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, timeout=2)
    outcome = await outbox.attempt(await enqueue(store, receiver.url))
    await outbox.stop()
    assert outcome.state is DeliveryState.FAILED
    assert (outcome.attempts, outcome.last_status_code, outcome.last_error) == (1, status, f"HTTP {status}")
    assert await store.next_due_at() is None
    assert len(receiver.bodies) == 1


@pytest.mark.parametrize("status", [408, 500, 502])
async def test_408_and_5xx_are_retried(store: SqliteStore, webhook_receiver: StartReceiver,
                                       status: int) -> None:
    receiver = await webhook_receiver([status])
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, timeout=2)
    outcome = await outbox.attempt(await enqueue(store, receiver.url))
    await outbox.stop()
    assert outcome.state is DeliveryState.PENDING and outcome.last_status_code == status


async def test_410_disables_the_url_for_later_deliveries(store: SqliteStore,
                                                         webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([410])
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, timeout=2)
    first = await enqueue(store, receiver.url, "evt_1")
    second = await enqueue(store, receiver.url, "evt_2")
    gone = await outbox.attempt(first)
    assert gone.state is DeliveryState.DISABLED and gone.last_status_code == 410
    assert await store.url_disabled(receiver.url)

    skipped = await outbox.attempt(second)
    await outbox.stop()
    assert skipped.state is DeliveryState.DISABLED and skipped.attempts == 0
    assert await store.deliveries(second.call_id) == [skipped]
    assert receiver.webhook_ids == ["evt_1"]


async def test_an_unreachable_url_is_retried(store: SqliteStore) -> None:
    clock = Clock()
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, timeout=2, base_delay=5.0, clock=clock)
    outcome = await outbox.attempt(await enqueue(store, UNREACHABLE, created_at=clock.now))
    await outbox.stop()
    assert outcome.state is DeliveryState.PENDING and outcome.attempts == 1
    assert outcome.last_status_code is None
    assert outcome.last_error is not None and "Connect" in outcome.last_error
    assert "s3cret" not in outcome.last_error
    assert clock.now + 1 <= outcome.next_attempt_at <= clock.now + 5


async def test_a_receiver_that_never_answers_times_out_and_is_retried(store: SqliteStore) -> None:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; returns when the client gives up
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, timeout=0.3)
    outcome = await outbox.attempt(await enqueue(store, f"http://127.0.0.1:{port}/hook"))
    await outbox.stop()
    server.close()
    await server.wait_closed()
    assert outcome.state is DeliveryState.PENDING and outcome.attempts == 1
    assert outcome.last_error == "timed out after 0.3 s"


async def test_gives_up_after_max_age(store: SqliteStore, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([503])
    clock = Clock()
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, timeout=2, max_age=3600, clock=clock)
    outcome = await outbox.attempt(await enqueue(store, receiver.url, created_at=clock.now - 3601))
    await outbox.stop()
    assert outcome.state is DeliveryState.FAILED
    assert (outcome.attempts, outcome.last_status_code) == (1, 503)
    assert outcome.last_error == "HTTP 503; retried for longer than 3600 s"
    assert await store.next_due_at() is None


async def test_run_delivers_what_wake_announces_and_stop_ends_it(
        store: SqliteStore, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([])
    results: asyncio.Queue[WebhookDelivery] = asyncio.Queue()
    outbox = Outbox(store, SECRET, outbound=LOOPBACK_ALLOWED, timeout=2, on_result=results.put_nowait)
    await enqueue(store, receiver.url, "evt_1")
    await enqueue(store, receiver.url, "evt_2")
    assert not outbox.running
    running = asyncio.create_task(outbox.run())
    # Both waiting deliveries go out at start; then nothing is due and the loop sleeps up to a minute.
    first = [await asyncio.wait_for(results.get(), WAIT) for _ in range(2)]
    assert {d.event_id for d in first} == {"evt_1", "evt_2"}
    assert outbox.running

    await enqueue(store, receiver.url, "evt_3")
    outbox.wake()
    woken = await asyncio.wait_for(results.get(), WAIT)
    assert woken.event_id == "evt_3" and woken.state is DeliveryState.DELIVERED

    await asyncio.wait_for(outbox.stop(), WAIT)
    assert running.done() and running.exception() is None and not outbox.running
    assert sorted(receiver.webhook_ids) == ["evt_1", "evt_2", "evt_3"]


async def test_a_store_error_in_the_loop_is_not_fatal(tmp_path: Path,
                                                      webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([])
    store = SqliteStore(tmp_path / "callconnect.sqlite")  # not open yet: every call fails
    results: asyncio.Queue[WebhookDelivery] = asyncio.Queue()
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, timeout=2, on_result=results.put_nowait)
    with structlog.testing.capture_logs() as logs:
        running = asyncio.create_task(outbox.run())

        async def store_failed() -> None:
            while not any(entry["event"] == "outbox.store_failed" for entry in logs):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(store_failed(), WAIT)
    await store.open()
    try:
        await enqueue(store, receiver.url)
        outbox.wake()
        delivered = await asyncio.wait_for(results.get(), WAIT)
        assert delivered.state is DeliveryState.DELIVERED
        await asyncio.wait_for(outbox.stop(), WAIT)
        assert running.exception() is None
    finally:
        await store.close()


async def test_a_delivery_enqueued_before_a_crash_is_sent_after_restart(
        tmp_path: Path, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([])
    path = tmp_path / "callconnect.sqlite"
    before = SqliteStore(path)
    await before.open()
    delivery = await enqueue(before, receiver.url)
    # The controller goes down before the outbox sends anything.
    await Outbox(before, SECRET, outbound=LOOPBACK_ALLOWED).stop()
    await before.close()

    after = SqliteStore(path)
    await after.open()
    results: asyncio.Queue[WebhookDelivery] = asyncio.Queue()
    outbox = Outbox(after, SECRET, outbound=LOOPBACK_ALLOWED, timeout=2, on_result=results.put_nowait)
    running = asyncio.create_task(outbox.run())
    try:
        sent = await asyncio.wait_for(results.get(), WAIT)
        assert sent.state is DeliveryState.DELIVERED
        assert await after.deliveries(delivery.call_id) == [sent]
        assert receiver.webhook_ids == [delivery.event_id]
    finally:
        await asyncio.wait_for(outbox.stop(), WAIT)
        await after.close()
    assert running.done()


@pytest.mark.parametrize("secret", ["whsec_c2VjcmV0!x", "whsec_", ""])
def test_an_unusable_signing_secret_is_a_config_error(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Outbox(SqliteStore(tmp_path / "db.sqlite"), secret, outbound=LOOPBACK_ALLOWED)
    assert caught.value.error_id == "invalid-config"
    assert "c2VjcmV0" not in caught.value.message
