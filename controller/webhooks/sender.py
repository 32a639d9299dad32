"""The command line's one-shot webhook sender: the same body, signature and
retry rule as the daemon's outbox (controller.webhooks.outbox), but a few
attempts within the command instead of an outbox that retries for hours."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from controller.outbound import redact
from controller.outbound_client import outbound_client
from controller.webhooks.envelope import envelope, new_event_id
from controller.webhooks.post import post_once
from controller.webhooks.retry import Backoff
from controller.webhooks.signing import Signer

if TYPE_CHECKING:
    from controller.outbound import OutboundConfig

log = structlog.get_logger(__name__)


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
    """Sends one webhook, up to ``attempts`` times. ``signing_secret`` as for
    :class:`Signer` (None: unsigned); an unusable one is a ConfigError here."""

    def __init__(self, outbound: OutboundConfig, signing_secret: str | None = None, *,
                 timeout: float = 10.0, attempts: int = 3, backoff: float = 0.5,
                 max_delay: float = 30.0) -> None:
        self.outbound = outbound
        self.timeout = timeout
        self.attempts = max(1, attempts)
        # No floor: the command is waiting, and its few attempts are spaced by the backoff alone.
        self.backoff = Backoff(base_delay=backoff, max_delay=max_delay)
        self._signer = Signer(signing_secret)
        # Redirects are not followed: a 3xx is a final answer, as in the outbox.
        self._client = outbound_client(outbound, timeout, max_connections=1)

    async def close(self) -> None:
        await self._client.aclose()

    async def deliver(self, url: str, event_type: str, data: dict[str, Any]) -> Delivery:
        event_id = new_event_id()
        payload = envelope(event_type, data, time.time())
        attempt = 1
        while True:
            # Signed afresh each attempt: the timestamp is the attempt's.
            body, headers = self._signer.request(event_id, payload, time.time())
            answer = await post_once(self._client, url, body, headers, self.timeout)
            if answer.delivered:
                log.info("webhook.delivered", url=redact(url), event_id=event_id,
                         status=answer.status, attempt=attempt)
                return Delivery(event_id, True, answer.status, attempt)
            log.warning("webhook.attempt_failed", url=redact(url), event_id=event_id,
                        attempt=attempt, error=answer.error)
            if not answer.retryable or attempt == self.attempts:
                break
            await asyncio.sleep(self.backoff.delay(attempt, answer.retry_after, time.time()))
            attempt += 1
        log.error("webhook.failed", url=redact(url), event_id=event_id, error=answer.error)
        return Delivery(event_id, False, answer.status, attempt, answer.error)
