"""Scheduled calls: a request made outside its calling window with
``outside_calling_hours: "schedule"`` is stored in state "scheduled" and
placed, under the same call id, when the window opens.

They live in the store, so they survive a restart. At their time the call is
placed as any other, so every rule is checked again then: a number put on the
do-not-call list meanwhile, a daily cap reached or a trunk or agent at its
limit ends the call ``failed`` with that reason (and its completion webhook);
still outside the window (the clock moved) schedules it again. A daemon-wide
limit, a lost switch or draining only delays it. ``POST /v1/calls/{id}/hangup``
cancels one (``canceled``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog

from controller.calls.decision import Placed, Refused, Replayed, Scheduled
from controller.calls.request import CallRequest
from controller.calls.service import CallService
from controller.config import Config
from controller.daemon.listener import request_as_dict, request_from_dict
from controller.daemon.metrics import Metrics
from controller.errors import CallConnectError, OutsideCallingHours
from controller.ids import new_call_id
from controller.store import (
    IdempotencyKey,
    Store,
    StoredCall,
    StoreError,
    TimelineEntry,
    WebhookDelivery,
)
from controller.store.sqlite import SCHEDULED
from controller.webhooks.envelope import new_event_id
from controller.webhooks.outbox import Outbox

log = structlog.get_logger(__name__)

# Longest sleep between looks at the store (a clock change, a missed wake-up).
MAX_SLEEP_SECONDS = 30.0
STORE_RETRY_SECONDS = 1.0


class Scheduler:
    def __init__(self, config: Config, store: Store, calls: CallService, outbox: Outbox,
                 metrics: Metrics, may_place: Callable[[], float | None]) -> None:
        self.config = config
        self.store = store
        self.calls = calls
        self.outbox = outbox
        self.metrics = metrics
        # None when a call may be placed now, else seconds to wait.
        self.may_place = may_place
        self._wake = asyncio.Event()

    async def schedule(self, request: CallRequest, refusal: OutsideCallingHours,
                       idempotency_key: IdempotencyKey | None = None) -> StoredCall:
        """Store the call to be placed at ``refusal``'s next_window_at; the
        call already stored under the idempotency key, if any."""
        now = time.time()
        at = float(refusal.details["next_window_at"])
        stored = StoredCall(call_id=new_call_id(), created_at=now, updated_at=now,
                            state=SCHEDULED, status=None,
                            request=request_as_dict(request, idempotency_key),
                            snapshot={"scheduled_for": at, "reason": refusal.message},
                            idempotency_key=idempotency_key)
        stored, created = await self.store.create_call(stored)
        if created:
            await self.store.save_scheduled(stored, [TimelineEntry(
                stored.call_id, now, "transition",
                {"from": "new", "to": SCHEDULED, "reason": refusal.message})], [])
            log.info("call.scheduled", call_id=stored.call_id, scheduled_for=at,
                     field=refusal.details.get("field"), zone=refusal.details.get("zone"))
            self._wake.set()
        return stored

    async def cancel(self, stored: StoredCall) -> bool:
        """End a scheduled call as canceled; False once it was placed."""
        return await self._end(stored, "canceled", "canceled over the API before it was placed",
                               hangup_by="api")

    async def run(self) -> None:
        while True:
            try:
                wait = await self._place_due()
            except StoreError as exc:
                log.error("schedule.store_failed", error=exc.message)
                wait = STORE_RETRY_SECONDS
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(wait, MAX_SLEEP_SECONDS))

    async def _place_due(self) -> float:
        """Place every call that is due; seconds until the next one is."""
        for stored in await self.store.scheduled_calls():
            wait = float(stored.snapshot.get("scheduled_for", 0)) - time.time()
            if wait > 0:
                return wait
            blocked = self.may_place()
            if blocked is not None:
                return blocked
            await self._place(stored)
        return MAX_SLEEP_SECONDS

    async def _place(self, stored: StoredCall) -> None:
        structlog.contextvars.bind_contextvars(call_id=stored.call_id)
        try:
            await self._place_now(stored)
        finally:
            structlog.contextvars.unbind_contextvars("call_id")

    async def _place_now(self, stored: StoredCall) -> None:
        try:
            decision = await self.calls.place(request_from_dict(stored.request),
                                              stored.idempotency_key, scheduled_id=stored.call_id)
        except StoreError:
            current = await self.store.get_call(stored.call_id)
            if current is not None and current.state != SCHEDULED:
                log.info("schedule.gone", call_id=stored.call_id, state=current.state)
                return  # canceled meanwhile
            raise  # not the call's fault: it stays scheduled and is tried again
        except CallConnectError as exc:  # the whisper could not be rendered
            await self._refused(stored, exc)
            return
        match decision:
            case Placed():
                log.info("schedule.placed", call_id=stored.call_id)
            case Refused(reason=OutsideCallingHours() as refusal) \
                    if "next_window_at" in refusal.details:
                await self._move(stored, refusal)  # the clock moved: still outside
            case Refused(reason=OutsideCallingHours() as refusal):
                await self._end(stored, "failed", refusal.message)
            case Refused(reason=refusal):
                await self._refused(stored, refusal)
            case Replayed() | Scheduled():
                # Its idempotency key names another call: this one was never placed.
                log.error("schedule.not_placed", call_id=stored.call_id,
                          other=decision.call.call_id)

    async def _refused(self, stored: StoredCall, refusal: CallConnectError) -> None:
        log.info("schedule.refused", call_id=stored.call_id, error_id=refusal.error_id,
                 error=refusal.message)
        await self._end(stored, "failed", f"refused when its time came: {refusal.message}")

    async def _move(self, stored: StoredCall, refusal: OutsideCallingHours) -> None:
        at = refusal.details["next_window_at"]
        stored.snapshot = {**stored.snapshot, "scheduled_for": at, "reason": refusal.message}
        stored.updated_at = time.time()
        await self.store.save_scheduled(stored, [TimelineEntry(
            stored.call_id, stored.updated_at, "schedule",
            {"reason": refusal.message, "scheduled_for": at})], [])
        log.info("schedule.moved", call_id=stored.call_id, scheduled_for=at)

    async def _end(self, stored: StoredCall, status: str, reason: str,
                   hangup_by: str | None = None) -> bool:
        """Close a call that was never placed, with its result and completion
        webhook, in one transaction; False if it is no longer scheduled."""
        now = time.time()
        result = _unplaced_result(stored, status, reason, hangup_by, now)
        url = stored.request.get("webhook_url") or self.config.webhook.url
        deliveries = [WebhookDelivery(
            event_id=new_event_id(), call_id=stored.call_id, url=url,
            event_type="call.completed",
            payload={"type": "call.completed", "timestamp": now, "data": result},
            created_at=now, next_attempt_at=now)] if url else []
        ended = StoredCall(call_id=stored.call_id, created_at=stored.created_at, updated_at=now,
                           state="ended", status=status, request=stored.request,
                           snapshot=stored.snapshot, result=result,
                           idempotency_key=stored.idempotency_key)
        saved = await self.store.save_scheduled(ended, [TimelineEntry(
            stored.call_id, now, "transition", {"from": SCHEDULED, "to": "ended",
                                                "reason": f"{status}: {reason}"})], deliveries)
        if saved:
            log.info("call.ended", call_id=stored.call_id, status=status, reason=reason,
                     hangup_by=hangup_by, talk_seconds=0.0)
            self.metrics.calls.labels(status).inc()
            if deliveries:
                self.outbox.wake()
        return saved


def _unplaced_result(stored: StoredCall, status: str, reason: str, hangup_by: str | None,
                     now: float) -> dict[str, Any]:
    """A call's result, in the shape of a placed call's, for one never dialed."""
    request = stored.request
    leg_b = request["leg_b"]
    if isinstance(leg_b, list):
        leg_b = ", ".join(t if isinstance(t, str) else str(t.get("to")) for t in leg_b)

    def leg(target: str) -> dict[str, Any]:
        return {"target": target, "status": "not-dialed", "dialed": False, "hangup_cause": None,
                "hangup_cause_text": None, "sip_code": None, "answered_at": None,
                "ended_at": None}

    return {
        "call_uuid": stored.call_id, "status": status, "reason": reason, "success": False,
        "state": "ended", "leg_a": leg(request["leg_a"]), "leg_b": leg(str(leg_b)),
        "leg_a_status": "not-dialed", "leg_b_status": "not-dialed", "hangup_by": hangup_by,
        "whisper_played": None, "created_at": stored.created_at, "leg_a_answered_at": None,
        "leg_b_answered_at": None, "ended_at": now, "talk_seconds": 0.0, "recorded": False,
        "recording_error": None, "answered_by": None, "attempts": [],
        "timeline": [{"at": stored.created_at, "from": "new", "to": SCHEDULED,
                      "reason": stored.snapshot.get("reason", "")},
                     {"at": now, "from": SCHEDULED, "to": "ended", "reason": f"{status}: {reason}"}],
        "whisper": None, "recording": None, "metadata": request.get("metadata", {}),
        "scheduled_for": stored.snapshot.get("scheduled_for"),
    }
