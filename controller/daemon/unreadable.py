"""An open call a restarted daemon cannot read back: its stored snapshot or
request no longer validates (a row an older version wrote, a field changed
by hand). It is not followed again, and never stops the daemon: whatever of
it is still on the switch is hung up, and it is closed as ``failed`` with the
reason, with its completion webhook when its request still names a URL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from pydantic import ValidationError

from controller.backends.base import Backend
from controller.calls.request import MAX_TARGET_CHARS, CallRequest
from controller.config import Config
from controller.core.commands import HangupLegs
from controller.core.events import Event
from controller.core.live import core_from_snapshot
from controller.core.machine import CallConnect
from controller.core.outcomes import Leg
from controller.core.states import CallState
from controller.daemon.listener import request_from_dict
from controller.daemon.metrics import Metrics
from controller.errors import SwitchError
from controller.outbound import url_problem
from controller.store import Store, StoredCall, StoreError, TimelineEntry, WebhookDelivery
from controller.webhooks.envelope import envelope, new_event_id
from controller.webhooks.outbox import Outbox

log = structlog.get_logger(__name__)

# How long the switch may take to find and hang up the call's channels.
HANGUP_SECONDS = 10.0
# The most of the reading error a result carries (a validation error lists every field).
MAX_ERROR_CHARS = 1000


class UnreadableCalls:
    def __init__(self, config: Config, store: Store, backend: Backend, outbox: Outbox,
                 metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.backend = backend
        self.outbox = outbox
        self.metrics = metrics

    async def read_back(self, stored: StoredCall) -> tuple[CallConnect, CallRequest] | None:
        """The open call's core and request as stored; None once it is
        closed for they cannot be read."""
        try:
            core = core_from_snapshot(stored.snapshot)
        except Exception as exc:  # whatever the stored JSON holds: KeyError, ValueError, ...
            await self.close(stored, f"its snapshot cannot be read: {_describe(exc)}")
            return None
        try:
            request = request_from_dict(stored.request)
        except ValidationError as exc:
            await self.close(stored, f"its request no longer validates: {_fields(exc)}")
            return None
        except Exception as exc:  # not even a mapping of fields
            await self.close(stored, f"its request cannot be read: {_describe(exc)}")
            return None
        return core, request

    async def close(self, stored: StoredCall, problem: str) -> None:
        """Hang up what is left of the call on the switch, then close it in the
        store with its completion webhook, in one transaction."""
        log.error("daemon.reconcile_unreadable", call_id=stored.call_id, state=stored.state,
                  error=problem)
        hung_up = await self._hang_up(stored)
        now = time.time()
        reason = (f"the daemon restarted and could not read this call back from its store "
                  f"({problem}); it was not followed again, and "
                  + ("its channels were hung up" if hung_up else
                     f"any of its channels still on the switch carry call id {stored.call_id}")
                  + ": check the call's request and the daemon's log (daemon.reconcile_unreadable)")
        result = unreadable_result(stored, reason, now)
        url = self._webhook_url(stored.request)
        deliveries = [WebhookDelivery(
            event_id=new_event_id(), call_id=stored.call_id, url=url,
            event_type="call.completed", payload=envelope("call.completed", result, now),
            created_at=now, next_attempt_at=now)] if url else []
        ended = StoredCall(call_id=stored.call_id, created_at=stored.created_at, updated_at=now,
                           state=str(CallState.ENDED), status="failed", request=stored.request,
                           snapshot=stored.snapshot, result=result,
                           idempotency_key=stored.idempotency_key)
        try:
            await self.store.save_call(ended, [TimelineEntry(
                stored.call_id, now, "transition",
                {"from": stored.state, "to": str(CallState.ENDED), "reason": f"failed: {reason}"})],
                deliveries)
        except StoreError as exc:  # it stays open: the next start tries again
            log.error("daemon.unreadable_not_closed", call_id=stored.call_id, error=exc.message)
            return
        log.info("call.ended", call_id=stored.call_id, status="failed", reason=reason,
                 hangup_by=None, talk_seconds=0.0)
        self.metrics.calls.labels("failed").inc()
        if deliveries:
            self.outbox.wake()

    async def _hang_up(self, stored: StoredCall) -> bool:
        """Find the call's channels as a restart does, and hang them up; False
        if the switch could not be asked (the call's own record says so)."""
        try:
            state = CallState(stored.state)
        except ValueError:
            state = CallState.DIALING_A  # only how the channels are looked for depends on it

        def ignore(event: Event) -> None:
            """Nobody follows the call: what the switch reports of it is not needed."""

        try:
            async with asyncio.timeout(HANGUP_SECONDS):
                await self.backend.reattach(stored.call_id, str(state), ignore)
                await self.backend.execute(stored.call_id, HangupLegs((Leg.A, Leg.B)))
        except (SwitchError, TimeoutError) as exc:
            log.warning("daemon.unreadable_hangup_failed", call_id=stored.call_id,
                        error=getattr(exc, "message", None) or f"no answer in {HANGUP_SECONDS} s")
            return False
        finally:
            self.backend.forget(stored.call_id)
        return True

    def _webhook_url(self, request: dict[str, Any]) -> str | None:
        """The request's webhook_url if it still reads as one the daemon may
        send to, else the config's (as for any call)."""
        url = request.get("webhook_url") if isinstance(request, dict) else None
        if isinstance(url, str) and url and len(url) <= MAX_TARGET_CHARS \
                and url_problem(url, self.config.outbound) is None:
            return url
        return self.config.webhook.url or None


def _describe(error: Exception) -> str:
    return _bounded(f"{type(error).__name__}: {error}".replace("\n", "; "))


def _fields(error: ValidationError) -> str:
    """Each refused field and why, without pydantic's links."""
    return _bounded("; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}"
                              for e in error.errors()))


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "…"


def unreadable_result(stored: StoredCall, reason: str, now: float) -> dict[str, Any]:
    """The call's result in the shape every result has: what its snapshot
    still tells (legs, timeline, actions) when it reads, else only what the
    request names."""
    try:
        base = core_from_snapshot(stored.snapshot).result()
    except Exception:  # unreadable as well: the request's words only
        base = _bare_result(stored)
    request = stored.request if isinstance(stored.request, dict) else {}
    metadata = request.get("metadata")
    return {
        **base,
        "status": "failed", "reason": reason, "success": False, "state": str(CallState.ENDED),
        "ended_at": now, "hangup_by": None,
        "timeline": [*base["timeline"], {"at": now, "from": stored.state,
                                         "to": str(CallState.ENDED), "reason": f"failed: {reason}"}],
        "whisper": None, "recording": None,
        "metadata": metadata if isinstance(metadata, dict) else {},
    }


def _bare_result(stored: StoredCall) -> dict[str, Any]:
    request = stored.request if isinstance(stored.request, dict) else {}

    def leg(name: str) -> dict[str, Any]:
        target = request.get(name)
        return {"target": target if isinstance(target, str) else "", "status": "failed",
                "dialed": False, "hangup_cause": None, "hangup_cause_text": None,
                "sip_code": None, "answered_at": None, "ended_at": None}

    return {
        "call_uuid": stored.call_id, "leg_a": leg("leg_a"), "leg_b": leg("leg_b"),
        "leg_a_status": "failed", "leg_b_status": "failed", "whisper_played": None,
        "created_at": stored.created_at, "leg_a_answered_at": None, "leg_b_answered_at": None,
        "talk_seconds": 0.0, "recorded": False, "recording_error": None, "answered_by": None,
        "attempts": [], "timeline": [],
    }
