"""Completion webhooks: the result of a call, POSTed as JSON to the caller's URL.

Retried with exponential backoff on network errors, timeouts, 408, 429 and
5xx; any other answer is final. Only the URL's scheme, host and path are
logged: query strings often carry tokens. The URL must fit the [outbound]
policy (controller.outbound), checked again, with its host resolved, before
the first attempt.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from controller.errors import OutboundRefused
from controller.outbound import check_before_send, redact

if TYPE_CHECKING:
    from controller.outbound import OutboundConfig

log = structlog.get_logger(__name__)

RETRYABLE = {408, 429}


def is_retryable(status: int) -> bool:
    """Whether an HTTP answer to a webhook is worth another attempt."""
    return status >= 500 or status in RETRYABLE


@dataclass(frozen=True)
class Delivery:
    event_id: str
    delivered: bool
    status_code: int | None
    attempts: int
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "delivered": self.delivered,
                "status_code": self.status_code, "attempts": self.attempts, "error": self.error}


class WebhookSender:
    def __init__(self, outbound: OutboundConfig, timeout: float = 10.0, attempts: int = 3,
                 backoff: float = 0.5) -> None:
        self.outbound = outbound
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._client = httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        await self._client.aclose()

    async def deliver(self, url: str, event_type: str, data: dict[str, Any]) -> Delivery:
        event_id = f"evt_{uuid.uuid4().hex}"
        body = {"id": event_id, "type": event_type, "data": data}
        status: int | None = None
        error: str | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                await check_before_send(url, self.outbound, self.timeout)
                response = await self._client.post(
                    url, json=body, headers={"webhook-id": event_id})
                status = response.status_code
                if 200 <= status < 300:
                    log.info("webhook.delivered", url=redact(url), event_id=event_id,
                             status=status, attempt=attempt)
                    return Delivery(event_id, True, status, attempt)
                error = f"HTTP {status}"
                if not is_retryable(status):
                    break
            except OutboundRefused as exc:  # final: the policy will not change by retrying
                error = exc.message
                break
            except (httpx.HTTPError, OSError, TimeoutError) as exc:  # OSError: resolving failed
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("webhook.attempt_failed", url=redact(url), event_id=event_id,
                        attempt=attempt, error=error)
            if attempt < self.attempts:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        log.error("webhook.failed", url=redact(url), event_id=event_id, error=error)
        return Delivery(event_id, False, status, attempt, error)
