"""The daemon's view of a call's life: every transition persisted with its
timeline entries and the webhook deliveries it causes, in one transaction,
before the switch is asked to do anything next.

When the store cannot be written (a full disk), a call already under way is
not abandoned: its changes are kept in memory, merged, and written as soon as
the store takes them again; meanwhile new calls are refused."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import structlog

from controller.calls.request import CallRequest
from controller.calls.runner import ActiveCall, DuplicateRequest
from controller.config import Config
from controller.core.live import LiveCall
from controller.core.live_table import LIVE_STATES
from controller.core.outcomes import Leg
from controller.core.states import CallState, Transition
from controller.daemon.metrics import Metrics
from controller.recording_links import RecordingLinks
from controller.store import (
    IdempotencyKey,
    Store,
    StoredCall,
    StoreError,
    TimelineEntry,
    WebhookDelivery,
)
from controller.webhooks.envelope import envelope, new_event_id
from controller.webhooks.outbox import Outbox

log = structlog.get_logger(__name__)

# Seconds between attempts to write changes the store refused.
UNSAVED_RETRY_SECONDS = 1.0


@dataclasses.dataclass
class Unsaved:
    """A call's changes the store refused, merged until it takes them."""

    record: StoredCall
    timeline: list[TimelineEntry]
    deliveries: list[WebhookDelivery]
    error: StoreError


def request_as_dict(request: CallRequest, idempotency_key: IdempotencyKey | None) -> dict[str, Any]:
    """The request as the store keeps it (and GET /v1/calls/{id} shows it):
    leg_b and fallbacks as they were sent, the idempotency key beside them
    (the key only: its token and body hashes are the store's columns)."""
    return {**request.model_dump(mode="json"), **request.routing(),
            "idempotency_key": idempotency_key.key if idempotency_key else None}


def request_from_dict(data: dict[str, Any]) -> CallRequest:
    """A stored request (rows of every version); its idempotency key is the
    stored call's."""
    fields = {key: value for key, value in data.items() if key != "idempotency_key"}
    return CallRequest.model_validate(fields)


def status_events(transition: Transition, inbound: bool = False) -> list[tuple[str, str]]:
    """(webhook event, leg) pairs that one transition stands for. A single-leg
    call's leg A answers when its first action starts; an inbound caller is
    answered by the switch, for a step, without a transition of its own."""
    to, came_from = transition.to_state, transition.from_state
    if to is CallState.DIALING_A:
        return [("initiated", "a")]
    if to is CallState.RINGING_A:
        return [("ringing", "a")]
    if to is CallState.RINGING_B:
        return [("ringing", "b")]
    if came_from in (CallState.DIALING_A, CallState.RINGING_A) and not inbound and to in (
            CallState.WHISPERING, CallState.DIALING_B, CallState.ROUTING, *LIVE_STATES):
        return [("answered", "a")]
    if to is CallState.CONFIRMING:
        return [("answered", "b")]
    if to is CallState.BRIDGED:
        answered = [] if came_from is CallState.CONFIRMING else [("answered", "b")]
        return [*answered, ("bridged", "b")]
    return []


class StoreListener:
    def __init__(self, config: Config, store: Store, outbox: Outbox, metrics: Metrics,
                 links: RecordingLinks | None = None) -> None:
        """``links``: signs the recording link each result carries (none without)."""
        self.config = config
        self.links = links
        # Once: for a wildcard bind address it asks the resolver for this machine's name.
        self.api_url = links.base_url if links is not None else config.api.base_url()
        self.store = store
        self.outbox = outbox
        self.metrics = metrics
        # The end of a call is saved with its result, in one transaction.
        self._ending: dict[str, tuple[list[TimelineEntry], list[WebhookDelivery]]] = {}
        self.unsaved: dict[str, Unsaved] = {}
        # One call's writes stay in order; different calls' writes share the
        # store's group commits.
        self._saving: dict[str, asyncio.Lock] = {}
        self._retrying: asyncio.Task[None] | None = None

    def record_of(self, call: ActiveCall, result: dict[str, Any] | None = None) -> StoredCall:
        core = call.core
        if call.stored_request is None:
            call.stored_request = request_as_dict(call.request, call.idempotency_key)
        return StoredCall(
            call_id=call.call_id,
            created_at=core.created_at,
            updated_at=time.time(),
            state=str(core.state),
            status=str(core.status) if core.status else None,
            request=call.stored_request,
            snapshot=core.snapshot(),
            result=result,
            idempotency_key=call.idempotency_key,
        )

    async def call_created(self, call: ActiveCall) -> None:
        if self.unsaved:
            # Accepting a call we may not be able to record would risk losing it.
            raise next(iter(self.unsaved.values())).error
        stored, created = await self.store.create_call(self.record_of(call))
        if not created:
            raise DuplicateRequest(stored)
        self.metrics.active_calls.inc()

    async def call_changed(self, call: ActiveCall, transitions: list[Transition]) -> None:
        timeline = [TimelineEntry(call.call_id, t.at, "transition",
                                  {"from": str(t.from_state), "to": str(t.to_state),
                                   "reason": t.reason}) for t in transitions]
        deliveries = []
        inbound = isinstance(call.core, LiveCall) and call.core.direction == "inbound"
        for transition in transitions:
            for event, leg in status_events(transition, inbound):
                if event in call.request.webhook_events:
                    deliveries += self._deliveries(call, f"call.{event}", {
                        "call_uuid": call.call_id, "leg": leg, "state": str(transition.to_state),
                        "at": transition.at, "metadata": call.request.metadata})
            self._observe_setup(call, transition)
        if call.core.finished:
            self._ending[call.call_id] = (timeline, deliveries)
            return
        await self._save(self.record_of(call), timeline, deliveries)

    async def call_ended(self, call: ActiveCall, result: dict[str, Any]) -> None:
        recording = result.get("recording")
        if recording:
            # The API's URL needs a token; the signed link is for whoever gets the webhook.
            recording["url"] = f"{self.api_url}/v1/calls/{call.call_id}/recording"
            if self.links is not None:
                recording["signed_url"], recording["signed_url_expires_at"] = self.links.link(
                    call.call_id, time.time())
        timeline, deliveries = self._ending.pop(call.call_id, ([], []))
        deliveries += self._deliveries(call, "call.completed", result)
        await self._save(self.record_of(call, result), timeline, deliveries)
        if call.call_id not in self.unsaved:
            self._saving.pop(call.call_id, None)
        self.metrics.calls.labels(result["status"]).inc()
        self.metrics.active_calls.dec()

    async def call_reported(self, call: ActiveCall, event: str, data: dict[str, Any]) -> None:
        """Saved with the call's state as it is now, like a transition's callbacks."""
        if event.removeprefix("call.") not in call.request.webhook_events:
            return
        deliveries = self._deliveries(call, event, {**data, "metadata": call.request.metadata})
        if call.call_id in self._ending:
            self._ending[call.call_id][1].extend(deliveries)
            return
        await self._save(self.record_of(call), [], deliveries)

    async def _save(self, record: StoredCall, timeline: list[TimelineEntry],
                    deliveries: list[WebhookDelivery]) -> None:
        async with self._saving.setdefault(record.call_id, asyncio.Lock()):
            earlier = self.unsaved.pop(record.call_id, None)
            if earlier is not None:
                timeline = earlier.timeline + timeline
                deliveries = earlier.deliveries + deliveries
            try:
                await self.store.save_call(record, timeline, deliveries)
            except StoreError as exc:
                self.unsaved[record.call_id] = Unsaved(record, timeline, deliveries, exc)
                log.error("store.save_deferred", call_id=record.call_id, error=exc.message,
                          unsaved_calls=len(self.unsaved))
                if self._retrying is None or self._retrying.done():
                    self._retrying = asyncio.create_task(self._retry_unsaved(),
                                                         name="store-retry")
                return
        if deliveries:
            self.outbox.enqueued(deliveries)  # committed first, sent now

    async def _retry_unsaved(self) -> None:
        while self.unsaved:
            await asyncio.sleep(UNSAVED_RETRY_SECONDS)
            for call_id in list(self.unsaved):
                async with self._saving.setdefault(call_id, asyncio.Lock()):
                    pending = self.unsaved.get(call_id)
                    if pending is None:
                        continue
                    try:
                        await self.store.save_call(pending.record, pending.timeline,
                                                   pending.deliveries)
                    except StoreError as exc:
                        pending.error = exc
                        continue
                    del self.unsaved[call_id]
                    if pending.record.state == CallState.ENDED:
                        self._saving.pop(call_id, None)
                log.info("store.save_caught_up", call_id=call_id, state=pending.record.state)
                if pending.deliveries:
                    self.outbox.enqueued(pending.deliveries)

    async def flush(self) -> None:
        """At shutdown: one last try at what the store refused."""
        if self._retrying is not None:
            self._retrying.cancel()
        for call_id in list(self.unsaved):
            pending = self.unsaved.pop(call_id)
            try:
                await self.store.save_call(pending.record, pending.timeline, pending.deliveries)
            except StoreError as exc:
                log.error("store.changes_lost", call_id=call_id, state=pending.record.state,
                          error=exc.message)

    def _deliveries(self, call: ActiveCall, event_type: str,
                    data: dict[str, Any]) -> list[WebhookDelivery]:
        url = call.request.webhook_url or self.config.webhook.url
        if not url:
            return []
        now = time.time()
        return [WebhookDelivery(event_id=new_event_id(), call_id=call.call_id, url=url,
                                event_type=event_type, payload=envelope(event_type, data, now),
                                created_at=now, next_attempt_at=now)]

    def _observe_setup(self, call: ActiveCall, transition: Transition) -> None:
        for leg, dialed_state in ((Leg.A, CallState.DIALING_A), (Leg.B, CallState.DIALING_B)):
            answered_at = call.core.legs[leg].answered_at
            if answered_at != transition.at:
                continue
            dialed = next((t.at for t in call.core.timeline if t.to_state is dialed_state), None)
            if dialed is not None:
                self.metrics.leg_setup.labels(str(leg)).observe(answered_at - dialed)
