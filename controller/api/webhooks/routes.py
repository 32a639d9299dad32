"""Webhook deliveries: list them, queue one again, and list and re-enable the
URLs a 410 Gone disabled."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.params import Depends
from fastapi.responses import JSONResponse

from controller.api.errors import (
    STORE_UNAVAILABLE,
    UNAUTHORIZED,
    ApiErrorId,
    answers,
    error,
    failure,
)
from controller.api.interface import Operations
from controller.api.webhooks.schemas import (
    DeliveryList,
    DeliveryView,
    DisabledUrlList,
    EnabledUrl,
    delivery_view,
    disabled_url_view,
)
from controller.errors import InvalidField, InvalidRequest, UrlDisabled
from controller.store import DeliveryState

Cursor = Annotated[str | None, Query(max_length=200)]


READ = (UNAUTHORIZED, STORE_UNAVAILABLE)


def routes(ops: Operations, auth: Sequence[Depends]) -> APIRouter:
    router = APIRouter(dependencies=list(auth), tags=["webhooks"])

    @router.get("/v1/webhooks/deliveries", response_model=DeliveryList,
                operation_id="listWebhookDeliveries", summary="Webhook deliveries, newest first",
                responses=answers(*READ, InvalidField.error_id))
    async def list_deliveries(call_id: Annotated[str | None, Query(max_length=200)] = None,
                              state: Annotated[DeliveryState | None, Query()] = None,
                              limit: Annotated[int, Query(ge=1, le=500)] = 50,
                              cursor: Cursor = None) -> Any:
        """Every delivery the outbox keeps, by call and by state, paged with
        `next_cursor`."""
        try:
            page = await ops.list_deliveries(call_id=call_id, state=state, limit=limit, cursor=cursor)
        except InvalidRequest:
            return bad_cursor()
        return DeliveryList(deliveries=[delivery_view(d) for d in page.deliveries],
                            next_cursor=page.next_cursor)

    @router.post("/v1/webhooks/deliveries/{event_id}/redeliver", status_code=202,
                 response_model=DeliveryView, operation_id="redeliverWebhook",
                 summary="Send a delivery again now, with the same webhook-id, whatever its state",
                 responses=answers(*READ, ApiErrorId.DELIVERY_NOT_FOUND, UrlDisabled.error_id))
    async def redeliver(event_id: str) -> Any:
        """Queued at once and retried like any delivery while it is younger
        than webhook.max_age_hours. Its URL must not be disabled (409
        url-disabled, with its url_id: re-enable it first)."""
        try:
            queued = await ops.redeliver(event_id)
        except UrlDisabled as exc:
            return failure(exc)
        if queued is None:
            return error(ApiErrorId.DELIVERY_NOT_FOUND, f"no webhook delivery {event_id}",
                         event_id=event_id)
        return delivery_view(queued)

    @router.get("/v1/webhooks/disabled-urls", response_model=DisabledUrlList,
                operation_id="listDisabledWebhookUrls",
                summary="Webhook URLs disabled by a 410 Gone, most recent first",
                responses=answers(*READ, InvalidField.error_id))
    async def disabled_urls(limit: Annotated[int, Query(ge=1, le=500)] = 100,
                            cursor: Cursor = None) -> Any:
        """Nothing is sent to these until they are re-enabled; paged with
        `next_cursor`."""
        try:
            urls, next_cursor = await ops.disabled_urls(limit, cursor)
        except InvalidRequest:
            return bad_cursor()
        return DisabledUrlList(urls=[disabled_url_view(u) for u in urls], next_cursor=next_cursor)

    @router.delete("/v1/webhooks/disabled-urls/{url_id}", response_model=EnabledUrl,
                   operation_id="enableWebhookUrl", summary="Deliver to a disabled URL again",
                   responses=answers(*READ, InvalidField.error_id,
                                     ApiErrorId.DISABLED_URL_NOT_FOUND))
    async def enable_url(url_id: str, redeliver: Annotated[bool, Query(description=(
            "Also queue again, now, the deliveries this URL's 410 disabled"))] = False) -> Any:
        """Re-enabling sends nothing by itself; with `redeliver=true` every
        delivery to the URL that is `disabled` is queued now."""
        enabled = await ops.enable_url(url_id, redeliver)
        if enabled is None:
            return error(ApiErrorId.DISABLED_URL_NOT_FOUND, f"no disabled webhook URL {url_id}",
                         url_id=url_id)
        url, redelivered = enabled
        return EnabledUrl(**disabled_url_view(url).model_dump(), redelivered=redelivered)

    return router


def bad_cursor() -> JSONResponse:
    return error(InvalidField.error_id, "cursor: not a cursor this API gave out", field="cursor")
