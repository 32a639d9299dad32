"""The outbox keeps the due deliveries it knows of in memory, with the real
SQLite store and real loopback receivers: a backlog costs one look at the
store, not one for every answer, and one more for each window it fills; a
delivery handed over once committed goes without a look, even past a full
window of retries; a retry is looked for when it falls due."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from controller.store import DeliveryState, DueDelivery
from controller.store.sqlite import SqliteStore
from controller.webhooks import outbox as outbox_module
from controller.webhooks.outbox import Outbox
from tests.conftest import StartReceiver, WebhookReceiver
from tests.unit.webhooks.test_webhook_fairness import ONE_SECOND, Hung
from tests.unit.webhooks.test_webhook_outbox import LOOPBACK_ALLOWED, WAIT, enqueue

BACKLOG = 60


class CountedLooks(SqliteStore):
    """The real store, counting the outbox's looks for due deliveries. With
    ``hold`` set, a look reads, then waits for ``release`` before answering:
    its answer predates what is committed meanwhile."""

    looks = 0
    hold = False

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

    async def due_deliveries(self, now: float, limit: int) -> list[DueDelivery]:
        self.looks += 1
        due = await super().due_deliveries(now, limit)
        if self.hold:
            self.reading.set()
            await self.release.wait()
        return due


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountedLooks]:
    store = CountedLooks(tmp_path / "callconnect.sqlite")
    await store.open()
    yield store
    await store.close()


async def until(condition: Callable[[], bool], within: float = WAIT) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


async def received(receiver: WebhookReceiver, count: int, within: float = WAIT) -> list[str]:
    await until(lambda: len(receiver.webhook_ids) >= count, within)
    return receiver.webhook_ids


@asynccontextmanager
async def running(outbox: Outbox) -> AsyncIterator[None]:
    """The outbox's loop, from the block's start until it is stopped at its end."""
    loop = asyncio.create_task(outbox.run())
    try:
        yield
    finally:
        await asyncio.wait_for(outbox.stop(), WAIT)
        await loop


async def test_a_backlog_goes_oldest_first_after_one_look(
        store: CountedLooks, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    start = time.time()
    ids = [f"evt_{n:03d}" for n in range(BACKLOG)]
    for n, event_id in enumerate(ids):
        await enqueue(store, receiver.url, event_id, created_at=start - BACKLOG + n)
    # One at a time: every answer frees the only slot, and it once meant a look each.
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, per_host=1)
    async with running(outbox):
        assert await received(receiver, BACKLOG, within=4 * WAIT) == ids
        assert store.looks == 1


async def test_deliveries_handed_over_once_committed_go_without_a_look(
        store: CountedLooks, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED)
    async with running(outbox):
        await until(lambda: store.looks >= 1)  # the look at start
        ids = [f"evt_{n}" for n in range(5)]
        for event_id in ids:
            outbox.enqueued([await enqueue(store, receiver.url, event_id)])
        assert await received(receiver, len(ids)) == ids
        assert store.looks == 1


async def test_a_retry_is_sent_when_it_falls_due(
        store: CountedLooks, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([503])
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, base_delay=0.1, max_delay=0.1)
    async with running(outbox):
        outbox.enqueued([await enqueue(store, receiver.url, "evt_1")])
        # The retry is due about a second later (the shortest delay); the outbox
        # would otherwise look at the store again only after a minute idle.
        assert await received(receiver, 2) == ["evt_1", "evt_1"]
        async with asyncio.timeout(WAIT):
            while (await store.deliveries("call-evt_1"))[0].state is not DeliveryState.DELIVERED:
                await asyncio.sleep(0.01)
        [delivery] = await store.deliveries("call-evt_1")
        assert delivery.attempts == 2


async def test_a_delivery_handed_over_while_a_look_reads_is_sent(
        store: CountedLooks, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    store.hold = True
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED)
    async with running(outbox):
        await asyncio.wait_for(store.reading.wait(), WAIT)  # the look at start read nothing
        # Made before the look began and committed after its read, as a call's
        # change under load: neither that read nor the next retry time finds it.
        outbox.enqueued([await enqueue(store, receiver.url, "evt_1", created_at=time.time() - 1.0)])
        store.hold = False
        store.release.set()
        assert await received(receiver, 1) == ["evt_1"]


WINDOW = 20  # the outbox's window of a look, made small here


async def test_a_backlog_beyond_one_window_is_read_once_the_window_is_worked_off(
        store: CountedLooks, webhook_receiver: StartReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "DUE_WINDOW", WINDOW)
    receiver = await webhook_receiver()
    start = time.time()
    ids = [f"evt_{n:03d}" for n in range(2 * WINDOW + 5)]
    for n, event_id in enumerate(ids):
        await enqueue(store, receiver.url, event_id, created_at=start - len(ids) + n)
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, per_host=2)
    async with running(outbox):
        assert await received(receiver, len(ids), within=4 * WAIT) == ids
        assert store.looks == 3


async def test_a_fresh_delivery_passes_a_full_window_of_retries_to_a_hung_receiver(
        store: CountedLooks, webhook_receiver: StartReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "DUE_WINDOW", WINDOW)
    hung = Hung()
    await hung.start()
    healthy = await webhook_receiver()
    now = time.time()
    for n in range(2 * WINDOW):
        delivery = await enqueue(store, hung.url, f"evt_hung_{n}", created_at=now - 600 + n)
        await store.update_delivery(replace(delivery, attempts=3, last_error="HTTP 503",
                                            next_attempt_at=now - 1))
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, timeout=30, per_host=2)
    async with running(outbox):
        try:
            await until(lambda: hung.connections >= 2)  # the hung receiver holds its slots
            # Two new ones to the hung receiver wait for its slots beside the
            # retries known: those retries leave room for every fresh delivery.
            for n in range(2):
                outbox.enqueued([await enqueue(store, hung.url, f"evt_hung_new_{n}")])
            outbox.enqueued([await enqueue(store, healthy.url, "evt_fresh")])
            assert await received(healthy, 1, within=ONE_SECOND) == ["evt_fresh"]
        finally:
            await hung.stop()  # first: its slots are freed, so the outbox stops at once
