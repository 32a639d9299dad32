"""The webhook outbox: delivers the store's pending webhook deliveries at least once.

A delivery is written to the store with its call's state change
(:meth:`Store.save_call`) before it is sent, and every attempt's outcome is
saved before the next one, so a crash loses no webhook; at worst one is sent
twice, with the same ``webhook-id`` so the receiver can drop the repeat.

The body, its Standard Webhooks headers and signature, and the retry rule
are the ones the command line's sender uses too (controller.webhooks). Outcomes:

* 2xx: delivered;
* 410 Gone: the URL is disabled, for this delivery and every later one;
* 408, 429, 5xx, timeouts and network errors: retried after ``Retry-After``
  or an exponential backoff with full jitter, until ``max_age`` has passed;
* any other answer: failed, final;
* a URL the [outbound] policy refuses, or whose host resolves to a
  non-public address it does not allow (controller.outbound): failed, final.

Fairness: at most ``concurrency`` deliveries are in flight, and at most
``per_host`` requests to one host (name and port) wait for its answer, so a
slow or dead receiver holds a few slots, never all of them; deliveries not yet
tried are taken before retries (the store's due order), so fresh webhooks pass
an old backlog. A host's slot is free again once it has answered: saving the
outcome asks nothing of it, and under load that save waits for its commit
about as long as the request took.

The outbox keeps the due deliveries it knows of in memory, in that order, and
looks at the store only when it may hold others: at start, when wake() asks
(a redelivery, a change saved late), when a retry falls due, and when the
window it read was full. A delivery just committed with its call's change is
handed over by enqueued(). It used to look at the store every time a
receiver answered: under a backlog, each answer read and sorted the whole
backlog again, so each webhook cost more the longer the backlog was
(python -m bench.outbox_drain).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog

from controller.config import MAX_WEBHOOK_CONCURRENCY
from controller.outbound import redact
from controller.outbound_client import outbound_client
from controller.store import DeliveryState, DueDelivery, Store, StoreError, WebhookDelivery
from controller.webhooks.post import post_once
from controller.webhooks.retry import Backoff
from controller.webhooks.signing import Signer

if TYPE_CHECKING:
    from controller.outbound import OutboundConfig

log = structlog.get_logger(__name__)

# The longest the loop sleeps without looking at the store, in case a wake() was missed.
MAX_IDLE_SECONDS = 60.0
# The pause after the store failed, before the loop tries it again.
STORE_RETRY_SECONDS = 5.0
# Never retried sooner than this, whatever Retry-After asks.
MIN_RETRY_DELAY = 1.0
# How many due deliveries one look at the store reads, to find some for hosts
# with a free slot past those waiting for a busy host. Twice the most that may
# be in flight, so a full window always holds some not in flight yet.
DUE_WINDOW = 2 * MAX_WEBHOOK_CONCURRENCY
# The least time between two looks for what a full window left in the store.
MORE_LOOK_SECONDS = 0.1


class Outbox:
    def __init__(self, store: Store, signing_secret: str | None, timeout: float = 10.0,
                 max_age: float = 24 * 3600, base_delay: float = 5.0, max_delay: float = 3600.0,
                 concurrency: int = 16, per_host: int = 4,
                 on_result: Callable[[WebhookDelivery], None] | None = None,
                 clock: Callable[[], float] = time.time, *, outbound: OutboundConfig) -> None:
        self._store = store
        self._signer = Signer(signing_secret)
        self._timeout = timeout
        self._max_age = max_age
        self._backoff = Backoff(base_delay, max_delay, MIN_RETRY_DELAY)
        self._concurrency = max(1, concurrency)
        self._per_host = max(1, per_host)
        self._on_result = on_result
        self._clock = clock
        # Redirects are not followed: a 3xx is a final answer, as the README promises.
        self._client = outbound_client(outbound, timeout, max_connections=self._concurrency)
        self._asking: Counter[str] = Counter()  # host -> requests waiting for its answer
        # The due deliveries known, not yet started, each oldest first, with
        # their host: those never tried go before retries. At most DUE_WINDOW each.
        self._untried: dict[str, tuple[DueDelivery, str]] = {}
        self._retries: dict[str, tuple[DueDelivery, str]] = {}
        # When to read the store again: asked to (wake()); when the next retry
        # falls due; and once those known of a kind are worked off, if the
        # store may hold more of that kind than the last look's window did.
        self._look_now = True
        self._next_look: float | None = None
        self._more_untried = False
        self._more_retries = False
        self._last_look = float("-inf")
        self._arrived: list[DueDelivery] | None = None  # enqueued() while a look reads
        self._wake = asyncio.Event()
        self._stopping = False
        self._run_task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether run() is looping now (for /status)."""
        return self._run_task is not None and not self._run_task.done()

    def wake(self) -> None:
        """Look at the store now: deliveries may be due that enqueued() did not hand over."""
        self._look_now = True
        self._wake.set()

    def enqueued(self, deliveries: Iterable[WebhookDelivery]) -> None:
        """Deliveries just committed: those due now go without a look at the store."""
        now = self._clock()
        for delivery in deliveries:
            if delivery.next_attempt_at > now:
                self._look_at(delivery.next_attempt_at)
                continue
            due = DueDelivery(delivery.event_id, delivery.url)
            if self._arrived is not None:
                self._arrived.append(due)
            if len(self._untried) >= DUE_WINDOW:
                self._more_untried = True  # read once those known are worked off
            else:
                self._untried[due.event_id] = (due, _host_key(due.url))
        self._wake.set()

    async def run(self) -> None:
        """Send due deliveries until stop(), up to ``concurrency`` at a time
        and ``per_host`` to one host: a slot freed by one delivery is filled at
        once, so a slow receiver holds up only its own deliveries. Store failures are logged and retried;
        they never end the loop."""
        self._run_task = asyncio.current_task()
        log.info("outbox.started")
        in_flight: dict[str, asyncio.Task[WebhookDelivery | None]] = {}
        try:
            while not self._stopping:
                if self._should_look():
                    await self._look(in_flight)
                self._start_due(in_flight)
                await self._wait(in_flight)
                self._reap(in_flight)
        finally:
            if in_flight:
                await asyncio.wait(in_flight.values(), timeout=self._timeout + 1.0)
                for task in in_flight.values():
                    task.cancel()
        log.info("outbox.stopped")

    def _should_look(self) -> bool:
        if self._look_now:
            return True
        at = self._look_due_at()
        return at is not None and at <= self._clock()

    def _look_due_at(self) -> float | None:
        """When to look at the store next (None: only when asked to)."""
        at = self._next_look
        if (self._more_untried and not self._untried) or (self._more_retries and not self._retries):
            more = self._last_look + MORE_LOOK_SECONDS
            at = more if at is None else min(at, more)
        return at

    def _look_at(self, at: float) -> None:
        """Read the store again at ``at`` at the latest (a retry falls due then)."""
        if self._next_look is None or at < self._next_look:
            self._next_look = at

    async def _look(self, in_flight: dict[str, asyncio.Task[WebhookDelivery | None]]) -> None:
        """The due deliveries known become the store's, plus those enqueued
        meanwhile (the read may predate their commit)."""
        self._look_now = False
        self._arrived = []
        now = self._last_look = self._clock()
        try:
            due = await self._store.due_deliveries(now, DUE_WINDOW)
            self._next_look = await self._store.next_due_at(after=now)
        except StoreError as exc:
            log.error("outbox.store_failed", error_id=exc.error_id, error=exc.message)
            self._next_look = now + STORE_RETRY_SECONDS
            return
        finally:
            arrived, self._arrived = self._arrived, None
        # Those never tried come first: a full window that ends on one may
        # leave more of them, one that ends on a retry only more retries.
        full = len(due) >= DUE_WINDOW
        self._more_untried = full and not due[-1].retry
        self._more_retries = full and due[-1].retry
        self._untried = {d.event_id: (d, _host_key(d.url)) for d in [*due, *arrived]
                         if not d.retry and d.event_id not in in_flight}
        self._retries = {d.event_id: (d, _host_key(d.url)) for d in due
                         if d.retry and d.event_id not in in_flight}

    def _start_due(self, in_flight: dict[str, asyncio.Task[WebhookDelivery | None]]) -> None:
        for queue in (self._untried, self._retries):
            for event_id, (delivery, host) in list(queue.items()):
                if len(in_flight) >= self._concurrency:
                    return
                if event_id in in_flight or self._asking[host] >= self._per_host:
                    continue
                del queue[event_id]
                self._asking[host] += 1
                in_flight[event_id] = asyncio.create_task(self._attempt_due(delivery, host))

    async def _attempt_due(self, due: DueDelivery, host: str) -> WebhookDelivery | None:
        """Read the chosen delivery whole and attempt it (None if it is no
        longer pending: delivered by a redelivery, pruned). The slot _start_due
        took on ``host`` is freed here, once: when the receiver has answered,
        or when the attempt ends without asking it."""
        freed = False

        def free_slot() -> None:
            nonlocal freed
            if not freed:
                freed = True
                self._asking[host] -= 1
                if not self._asking[host]:
                    del self._asking[host]
                self._wake.set()  # its slot is free: the next due delivery to it may go

        try:
            delivery = await self._store.get_delivery(due.event_id)
            if delivery is None or delivery.state is not DeliveryState.PENDING \
                    or delivery.next_attempt_at > self._clock():
                return None  # a look older than its last outcome's commit found it
            return await self.attempt(delivery, answered=free_slot)
        finally:
            free_slot()

    async def _wait(self, in_flight: dict[str, asyncio.Task[WebhookDelivery | None]]) -> None:
        """Until a delivery ends, a slot is freed, enqueued() or wake() is
        called, or it is time to look at the store."""
        if self._stopping or self._should_look():
            return
        delay = MAX_IDLE_SECONDS
        at = self._look_due_at()
        if at is not None:
            delay = min(delay, max(0.0, at - self._clock()))
        woken = asyncio.ensure_future(self._wake.wait())
        done, _ = await asyncio.wait({woken, *in_flight.values()}, timeout=delay,
                                     return_when=asyncio.FIRST_COMPLETED)
        woken.cancel()
        # Cleared before the next choice, so an enqueued() or wake() during it is not lost.
        self._wake.clear()
        if not done:
            self._look_now = True  # a retry is due, or in case a wake() was missed

    def _reap(self, in_flight: dict[str, asyncio.Task[WebhookDelivery | None]]) -> None:
        for event_id, task in list(in_flight.items()):
            if not task.done():
                continue
            del in_flight[event_id]
            error = None if task.cancelled() else task.exception()
            if error is not None:
                # A bug in one delivery must not stop every later webhook; it
                # is still pending (its outcome unsaved): found again by a look.
                log.error("outbox.delivery_failed", event_id=event_id, error=repr(error))
                self._look_at(self._clock() + STORE_RETRY_SECONDS)

    async def stop(self) -> None:
        """End run() once the deliveries in flight are done (cancelled if they
        take longer than one request may), then close the HTTP client."""
        self._stopping = True
        self._wake.set()
        task = self._run_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            _, pending = await asyncio.wait({task}, timeout=self._timeout + 1.0)
            if pending:
                task.cancel()
                await asyncio.wait({task})
        await self._client.aclose()

    async def attempt(self, delivery: WebhookDelivery,
                      answered: Callable[[], None] | None = None) -> WebhookDelivery:
        """Send the delivery once (unless its URL is disabled), call
        ``answered`` once the receiver has answered (or the send has failed),
        then save the outcome and return the delivery as saved. Under load the
        save waits about as long as the POST took, and run() lets the next
        delivery to the same receiver go without waiting for it."""
        try:
            if await self._store.url_disabled(delivery.url):
                outcome = replace(delivery, state=DeliveryState.DISABLED,
                                  last_error="not sent: the URL answered 410 Gone before")
                log.warning("webhook.disabled_url", url=redact(delivery.url),
                            event_id=delivery.event_id, call_id=delivery.call_id)
            else:
                outcome = await self._send(delivery)
        finally:
            if answered is not None:
                answered()
        await self._store.update_delivery(outcome)
        if outcome.state is DeliveryState.PENDING:
            self._look_at(outcome.next_attempt_at)
        if self._on_result is not None:
            self._on_result(outcome)
        return outcome

    async def _send(self, delivery: WebhookDelivery) -> WebhookDelivery:
        now = self._clock()
        body, headers = self._signer.request(delivery.event_id, delivery.payload, now)
        attempts = delivery.attempts + 1
        url = redact(delivery.url)
        answer = await post_once(self._client, delivery.url, body, headers, self._timeout)
        if answer.delivered:
            log.info("webhook.delivered", url=url, event_id=delivery.event_id, call_id=delivery.call_id,
                     status=answer.status, attempt=attempts)
            return replace(delivery, state=DeliveryState.DELIVERED, attempts=attempts,
                           last_status_code=answer.status, last_error=None, delivered_at=now)
        error = answer.error or ""
        if answer.status == 410:
            await self._store.disable_url(delivery.url, now)
            log.error("webhook.url_gone", url=url, event_id=delivery.event_id, attempt=attempts)
            return replace(delivery, state=DeliveryState.DISABLED, attempts=attempts,
                           last_status_code=answer.status, last_error=error)
        if answer.retryable:
            return self._retry_or_fail(delivery, now, attempts, answer.status, error, answer.retry_after)
        log.error("webhook.refused" if answer.refused else "webhook.failed", url=url,
                  event_id=delivery.event_id, call_id=delivery.call_id, status=answer.status,
                  attempt=attempts, error=error)
        return replace(delivery, state=DeliveryState.FAILED, attempts=attempts,
                       last_status_code=answer.status, last_error=error)

    def _retry_or_fail(self, delivery: WebhookDelivery, now: float, attempts: int,
                       status: int | None, error: str, retry_after: str | None) -> WebhookDelivery:
        url = redact(delivery.url)
        if now - delivery.created_at > self._max_age:
            log.error("webhook.gave_up", url=url, event_id=delivery.event_id, attempt=attempts,
                      error=error, max_age=self._max_age)
            return replace(delivery, state=DeliveryState.FAILED, attempts=attempts,
                           last_status_code=status,
                           last_error=f"{error}; retried for longer than {self._max_age:g} s")
        delay = self._backoff.delay(attempts, retry_after, now)
        log.warning("webhook.retry_scheduled", url=url, event_id=delivery.event_id, attempt=attempts,
                    error=error, delay=round(delay, 3))
        return replace(delivery, state=DeliveryState.PENDING, attempts=attempts,
                       last_status_code=status, last_error=error, next_attempt_at=now + delay)


def _host_key(url: str) -> str:
    """What a per-host slot is counted by: the URL's host and port."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # refused when it is sent; counted with its host meanwhile
        port = None
    return f"{parts.hostname}:{port or (443 if parts.scheme == 'https' else 80)}"
