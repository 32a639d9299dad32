"""Fairness in the webhook outbox, with the real SQLite store and real
loopback receivers: a dead receiver holds a few slots, never the others'
webhooks; a slot is free once the receiver answers; and fresh deliveries pass
a backlog of retries."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace

from controller.store import DeliveryState, DueDelivery
from controller.store.sqlite import SqliteStore
from controller.webhooks.outbox import Outbox
from tests.conftest import StartReceiver
from tests.unit.webhooks.test_webhook_outbox import LOOPBACK_ALLOWED, enqueue

HUNG_DELIVERIES = 40
ONE_SECOND = 1.0  # how late another URL's webhook may be, as promised


class Hung:
    """A receiver that takes connections and never answers, until released."""

    def __init__(self) -> None:
        self.connections = 0
        self.release = asyncio.Event()
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await self.release.wait()
        writer.close()

    async def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_a_hanging_url_does_not_delay_another_urls_webhook(
        store: SqliteStore, webhook_receiver: StartReceiver) -> None:
    hung = Hung()
    await hung.start()
    healthy = await webhook_receiver()
    start = time.time()
    for n in range(HUNG_DELIVERIES):
        await enqueue(store, hung.url, f"evt_hung_{n}", created_at=start - 1.0 + n * 0.001)
    await enqueue(store, healthy.url, "evt_other", created_at=start)  # the newest of all
    # The timeout is far longer than the promise: a slot held by the hung URL is never freed in time.
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, timeout=30, concurrency=8, per_host=2)
    running = asyncio.create_task(outbox.run())
    try:
        began = time.monotonic()
        await asyncio.wait_for(healthy.arrived.wait(), ONE_SECOND)
        assert time.monotonic() - began < ONE_SECOND
        assert healthy.webhook_ids == ["evt_other"]
        assert hung.connections <= 2, "at most per_host to one host"
    finally:
        await hung.stop()  # the hung deliveries fail and are rescheduled, so stop() is quick
        await asyncio.wait_for(outbox.stop(), 10)
        await running


async def test_a_hosts_slot_is_free_once_it_answers_before_the_outcome_is_saved(
        store: SqliteStore, webhook_receiver: StartReceiver) -> None:
    """Saving an outcome waits for a commit, which under load took as long as
    the request: a slot held until then halved what one receiver could get."""
    receiver = await webhook_receiver()
    for n in range(3):
        await enqueue(store, receiver.url, f"evt_{n}")
    assert store._db is not None
    disk_free = threading.Event()
    store._db._disk.submit(disk_free.wait, 10)  # no commit ends: every outcome's save waits
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, concurrency=8, per_host=1)
    running = asyncio.create_task(outbox.run())
    try:
        async with asyncio.timeout(5):
            while len(receiver.webhook_ids) < 3:
                await asyncio.sleep(0.01)
        assert receiver.webhook_ids == ["evt_0", "evt_1", "evt_2"]
        assert [d.state for d in await store.deliveries("call-evt_0")] == [DeliveryState.PENDING]
    finally:
        disk_free.set()
        await asyncio.wait_for(outbox.stop(), 10)
        await running
    for n in range(3):
        assert [d.state for d in await store.deliveries(f"call-evt_{n}")] == [DeliveryState.DELIVERED]


async def test_a_due_delivery_no_longer_pending_when_read_whole_is_not_sent(
        store: SqliteStore, webhook_receiver: StartReceiver) -> None:
    """The outbox chooses from ids and URLs, then reads each chosen delivery
    whole: one delivered meanwhile (a redelivery's attempt) is left alone."""
    receiver = await webhook_receiver()
    delivery = await enqueue(store, receiver.url)
    chosen = await store.due_deliveries(time.time(), 10)
    await store.update_delivery(replace(delivery, state=DeliveryState.DELIVERED, attempts=1))
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, per_host=1)
    outbox._asking["127.0.0.1:80"] += 1  # the slot the loop takes as it chooses
    try:
        assert await outbox._attempt_due(chosen[0], "127.0.0.1:80") is None
        assert receiver.webhook_ids == []
        assert not outbox._asking  # its slot is free again
    finally:
        await outbox.stop()


async def test_fresh_deliveries_are_due_before_old_retries(store: SqliteStore) -> None:
    now = time.time()
    old = [await enqueue(store, "http://dead.example.com/hook", f"evt_old_{n}", created_at=now - 600 + n)
           for n in range(3)]
    for delivery in old:  # tried and failed, due for a retry now
        await store.update_delivery(replace(delivery, attempts=5, last_error="HTTP 503",
                                            next_attempt_at=now - 1))
    fresh = await enqueue(store, "http://crm.example.com/hook", "evt_fresh", created_at=now)
    due = await store.due_deliveries(now, 2)
    assert due == [DueDelivery("evt_fresh", fresh.url), DueDelivery("evt_old_0", old[0].url, retry=True)]
