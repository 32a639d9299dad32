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
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog

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
# with a free slot past those waiting for a busy host.
DUE_WINDOW = 500


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
        self._wake = asyncio.Event()
        self._stopping = False
        self._run_task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether run() is looping now (for /status)."""
        return self._run_task is not None and not self._run_task.done()

    def wake(self) -> None:
        """Look at the store now: new deliveries were enqueued."""
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
                try:
                    if len(in_flight) < self._concurrency:
                        self._start_due(in_flight, await self._store.due_deliveries(
                            self._clock(), DUE_WINDOW))
                    next_due = await self._store.next_due_at()
                except StoreError as exc:
                    log.error("outbox.store_failed", error_id=exc.error_id, error=exc.message)
                    next_due = self._clock() + STORE_RETRY_SECONDS
                await self._wait(in_flight, next_due)
                self._reap(in_flight)
        finally:
            if in_flight:
                await asyncio.wait(in_flight.values(), timeout=self._timeout + 1.0)
                for task in in_flight.values():
                    task.cancel()
        log.info("outbox.stopped")

    def _start_due(self, in_flight: dict[str, asyncio.Task[WebhookDelivery | None]],
                   due: list[DueDelivery]) -> None:
        for delivery in due:
            if len(in_flight) >= self._concurrency:
                return
            host = _host_key(delivery.url)
            if delivery.event_id in in_flight or self._asking[host] >= self._per_host:
                continue
            self._asking[host] += 1
            in_flight[delivery.event_id] = asyncio.create_task(self._attempt_due(delivery, host))

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
            if delivery is None or delivery.state is not DeliveryState.PENDING:
                return None
            return await self.attempt(delivery, answered=free_slot)
        finally:
            free_slot()

    async def _wait(self, in_flight: dict[str, asyncio.Task[WebhookDelivery | None]],
                    due: float | None) -> None:
        """Until a delivery ends, wake() is called, or the next one is due."""
        if self._stopping:
            return
        delay = MAX_IDLE_SECONDS if due is None else min(MAX_IDLE_SECONDS, max(0.0, due - self._clock()))
        if delay == 0.0 and in_flight:
            delay = MAX_IDLE_SECONDS  # what is due is being sent: wait for a slot
        woken = asyncio.ensure_future(self._wake.wait())
        await asyncio.wait({woken, *in_flight.values()}, timeout=delay,
                           return_when=asyncio.FIRST_COMPLETED)
        woken.cancel()
        # Cleared before the next look at the store, so a wake() during that look is not lost.
        self._wake.clear()

    def _reap(self, in_flight: dict[str, asyncio.Task[WebhookDelivery | None]]) -> None:
        for event_id, task in list(in_flight.items()):
            if not task.done():
                continue
            del in_flight[event_id]
            error = None if task.cancelled() else task.exception()
            if error is not None:
                # A bug in one delivery must not stop every later webhook.
                log.error("outbox.delivery_failed", event_id=event_id, error=repr(error))

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
