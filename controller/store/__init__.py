"""Durable state: calls, their timelines and their webhook deliveries.

The daemon writes through this interface only, so another database can serve
several controllers later; :mod:`controller.store.sqlite` is the default (one
file, WAL, nothing to install). :class:`Store` is the union of one protocol per
aggregate, each of which a store implements in its own module.

A call's state change, the timeline entries it adds and the webhook deliveries
it causes are saved in one transaction (:meth:`Store.save_call`): a webhook is
always written before it is sent, so a crash loses none.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from controller.compliance.book import ComplianceBook
from controller.errors import CallConnectError
from controller.routing.agents import AgentBook


class StoreError(CallConnectError):
    """The store cannot be read or written (disk full, file unwritable, ...)."""

    error_id = "store-unavailable"


@dataclass(frozen=True)
class IdempotencyKey:
    """An Idempotency-Key as one API token sent it with one request body.
    Only hashes are kept: the token itself is never stored."""

    key: str
    scope: str | None = None  # a hash of the token; None on calls stored before keys had one
    request_hash: str | None = None  # a hash of the canonical request body; None as for scope


@dataclass
class StoredCall:
    call_id: str
    created_at: float
    updated_at: float
    state: str  # a core CallState value; "ended" once finished
    status: str | None  # a core CallStatus value once decided
    request: dict[str, Any]  # the call request as accepted (legs, whisper, webhook, metadata, ...)
    snapshot: dict[str, Any]  # the core's state, to pick the call up again after a restart
    result: dict[str, Any] | None = None  # the final result, once ended
    idempotency_key: IdempotencyKey | None = None


@dataclass(frozen=True)
class TimelineEntry:
    call_id: str
    at: float
    kind: str  # "transition", "command", "event", ...
    data: dict[str, Any] = field(default_factory=dict)


class DeliveryState(StrEnum):
    PENDING = "pending"  # not yet delivered; next_attempt_at says when
    DELIVERED = "delivered"
    FAILED = "failed"  # final: a 4xx, or retried for longer than allowed
    DISABLED = "disabled"  # final: the URL answered 410 Gone at some point


@dataclass
class WebhookDelivery:
    event_id: str  # the same across every retry (webhook-id header)
    call_id: str
    url: str
    event_type: str  # "call.initiated", "call.ringing", ..., "call.completed"
    payload: dict[str, Any]  # the whole JSON body sent
    created_at: float
    next_attempt_at: float
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None


@dataclass(frozen=True)
class DeliveryPage:
    deliveries: list[WebhookDelivery]
    next_cursor: str | None  # pass back to get the next page; None on the last


@dataclass(frozen=True)
class DueDelivery:
    """A due delivery as the outbox chooses it: by its receiver's host. The
    outbox reads the chosen ones whole (:meth:`DeliveryStore.get_delivery`):
    reading a window of 500 whole, their bodies decoded, took about 5 ms at
    every look. ``retry``: tried before, and due again."""
    event_id: str
    url: str
    retry: bool = False


@dataclass(frozen=True)
class DeliveryBacklog:
    pending: int  # deliveries not yet delivered, failed or disabled
    oldest_created_at: float | None  # the oldest pending one's event time; None if none


@dataclass(frozen=True)
class DisabledUrl:
    url_id: str  # an opaque id (a hash of the URL): names the URL without showing its query
    url: str
    disabled_at: float


def url_id_of(url: str) -> str:
    """The id a URL is named by in the API, which shows URLs only redacted."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CallPage:
    calls: list[StoredCall]
    next_cursor: str | None  # pass back to get the next page; None on the last


class CallStore(Protocol):
    """Calls (with their idempotency keys and scheduled calls) and their
    timelines. Saving a call also enqueues the webhook deliveries its change
    caused, in the same transaction."""

    async def create_call(self, call: StoredCall) -> tuple[StoredCall, bool]:
        """Insert a new call. If its idempotency key is already taken (see
        get_call_by_idempotency_key), insert nothing and return (the existing
        call, False); else (call, True)."""

    async def get_call(self, call_id: str) -> StoredCall | None: ...

    async def get_call_by_idempotency_key(self, key: IdempotencyKey) -> StoredCall | None:
        """The call stored under the same key from the same token (scope), or
        under the same key by a call stored before keys had a scope."""

    async def list_calls(self, *, status: str | None = None, created_after: float | None = None,
                         created_before: float | None = None, limit: int = 50,
                         cursor: str | None = None) -> CallPage:
        """Newest first; status filters on the final status ("completed", ...),
        "active" for calls placed and still running, or "scheduled"."""

    async def open_calls(self) -> list[StoredCall]:
        """Calls placed and not ended: the ones to reconcile after a restart
        (scheduled calls are not: nothing was dialed for them yet)."""

    async def save_call(self, call: StoredCall, timeline: list[TimelineEntry],
                        deliveries: list[WebhookDelivery]) -> None:
        """Update the call, append its new timeline entries and enqueue its new
        deliveries, all in one transaction."""

    async def timeline(self, call_id: str) -> list[TimelineEntry]: ...

    async def scheduled_calls(self) -> list[StoredCall]:
        """Calls in state "scheduled" (waiting for their calling window), by
        ``snapshot["scheduled_for"]``."""

    async def save_scheduled(self, call: StoredCall, timeline: list[TimelineEntry],
                             deliveries: list[WebhookDelivery]) -> bool:
        """save_call for a call still scheduled; False (and nothing written)
        once it was placed or ended. ``create_call`` with a scheduled call's
        id places it: its row becomes the live call's."""

    async def prune_calls(self, before: float) -> int:
        """Delete calls created before ``before`` that have ended, with their
        timelines and deliveries; never a call in progress or scheduled, nor
        one with a delivery still pending. How many calls were deleted."""


class DeliveryStore(Protocol):
    """Webhook deliveries (enqueued by :meth:`CallStore.save_call`) and the
    URLs that asked not to be called again."""

    async def deliveries(self, call_id: str) -> list[WebhookDelivery]: ...

    async def due_deliveries(self, now: float, limit: int) -> list[DueDelivery]:
        """Pending deliveries whose next_attempt_at has come: those not yet
        tried first, then oldest first."""

    async def next_due_at(self, after: float | None = None) -> float | None:
        """When the earliest pending delivery is due (of those due later than
        ``after``, if given); None if there is none."""

    async def delivery_backlog(self) -> DeliveryBacklog:
        """How many deliveries are pending, and since when the oldest is."""

    async def update_delivery(self, delivery: WebhookDelivery) -> None: ...

    async def disable_url(self, url: str, at: float) -> None:
        """Stop delivering to url (it answered 410 Gone)."""

    async def url_disabled(self, url: str) -> bool: ...

    async def list_deliveries(self, *, call_id: str | None = None, state: DeliveryState | None = None,
                              limit: int = 50, cursor: str | None = None) -> DeliveryPage:
        """Newest first; InvalidField for a cursor this store did not give out."""

    async def get_delivery(self, event_id: str) -> WebhookDelivery | None: ...

    async def redeliver(self, event_id: str, at: float) -> WebhookDelivery | None:
        """Make the delivery pending again, due at ``at``, whatever its state
        (its event id, attempts and last outcome stay); None if there is none."""

    async def disabled_urls(self, *, limit: int = 100,
                            cursor: str | None = None) -> tuple[list[DisabledUrl], str | None]:
        """The disabled URLs, most recently disabled first, and the cursor of
        the next page (None on the last); InvalidField for a bad cursor."""

    async def enable_url(self, url_id: str,
                         redeliver_at: float | None = None) -> tuple[DisabledUrl, int] | None:
        """Deliver to the URL with this id (:func:`url_id_of`) again; None if
        no disabled URL has it. With ``redeliver_at``, its disabled deliveries
        become pending, due then. Returns the URL and how many deliveries
        were made pending."""

    async def prune_deliveries(self, before: float) -> int:
        """Delete deliveries created before ``before`` that are no longer
        pending (delivered, failed or disabled). How many were deleted."""


class GroupStore(Protocol):
    """Agent groups made over the API."""

    async def list_groups(self) -> dict[str, dict[str, Any]]:
        """Name -> the group as given."""

    async def put_group(self, name: str, data: dict[str, Any]) -> None: ...

    async def delete_group(self, name: str) -> bool:
        """False if there was no such group. Its round-robin position goes with it."""


class NumberStore(Protocol):
    """The numbers made over the API (inbound calls)."""

    async def list_numbers(self) -> dict[str, dict[str, Any]]:
        """E.164 number -> its settings as given."""

    async def put_number(self, number: str, data: dict[str, Any], at: float) -> None: ...

    async def delete_number(self, number: str) -> bool:
        """False if there was no such number."""


class Store(CallStore, DeliveryStore, GroupStore, NumberStore, AgentBook, ComplianceBook,
            Protocol):
    """Every aggregate in one store: calls, webhook deliveries, agent groups,
    numbers, agent state (the :class:`AgentBook` the routing strategies read), and the
    do-not-call numbers and calls per number the compliance guards read
    (:class:`ComplianceBook`). They share one database, so a call's change and
    the deliveries it causes can be written together."""

    async def open(self) -> None:
        """Create or migrate the schema; StoreError if the file is unusable."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Prove the store can be written now (for /status); StoreError if not."""
