"""What the webhook delivery routes answer. URLs are shown redacted (no
userinfo, query or fragment: they often carry a token); ``url_id`` names a
URL exactly without showing it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from controller.outbound import redact
from controller.store import DeliveryState, DisabledUrl, WebhookDelivery, url_id_of


class DeliveryView(BaseModel):
    event_id: str = Field(description="The webhook-id header: the same on every attempt and redelivery")
    call_id: str
    url: str = Field(description="Redacted: scheme, host, port and path only")
    url_id: str = Field(description="Names the URL in /v1/webhooks/disabled-urls")
    event_type: str
    state: DeliveryState
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: float
    next_attempt_at: float
    delivered_at: float | None


class DeliveryList(BaseModel):
    deliveries: list[DeliveryView]
    next_cursor: str | None


class DisabledUrlView(BaseModel):
    url_id: str = Field(description="DELETE /v1/webhooks/disabled-urls/{url_id} re-enables the URL")
    url: str = Field(description="Redacted: scheme, host, port and path only")
    disabled_at: float


class DisabledUrlList(BaseModel):
    urls: list[DisabledUrlView]
    next_cursor: str | None


class EnabledUrl(DisabledUrlView):
    redelivered: int = Field(description="Disabled deliveries queued again (with ?redeliver=true)")


def delivery_view(delivery: WebhookDelivery) -> DeliveryView:
    return DeliveryView(
        event_id=delivery.event_id, call_id=delivery.call_id, url=redact(delivery.url),
        url_id=url_id_of(delivery.url), event_type=delivery.event_type, state=delivery.state,
        attempts=delivery.attempts, last_status_code=delivery.last_status_code,
        last_error=delivery.last_error, created_at=delivery.created_at,
        next_attempt_at=delivery.next_attempt_at, delivered_at=delivery.delivered_at)


def disabled_url_view(url: DisabledUrl) -> DisabledUrlView:
    return DisabledUrlView(url_id=url.url_id, url=redact(url.url), disabled_at=url.disabled_at)
