"""Webhook deliveries: list them, queue one again, and list and re-enable the
URLs a 410 Gone disabled."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.params import Depends
from fastapi.responses import JSONResponse

from controller.api.errors import ERRORS, error
from controller.api.interface import Operations
from controller.api.webhooks.schemas import (
    DeliveryList,
    DeliveryView,
    DisabledUrlList,
    EnabledUrl,
    delivery_view,
    disabled_url_view,
)
from controller.errors import InvalidRequest, UrlDisabled
from controller.store import DeliveryState

Cursor = Annotated[str | None, Query(max_length=200)]


def routes(ops: Operations, auth: Sequence[Depends]) -> APIRouter:
    router = APIRouter(dependencies=list(auth))

    @router.get("/v1/webhooks/deliveries", response_model=DeliveryList, responses=ERRORS,
                summary="Webhook deliveries, newest first")
    async def list_deliveries(call_id: Annotated[str | None, Query(max_length=200)] = None,
                              state: Annotated[DeliveryState | None, Query()] = None,
                              limit: Annotated[int, Query(ge=1, le=500)] = 50,
                              cursor: Cursor = None) -> Any:
        try:
            page = await ops.list_deliveries(call_id=call_id, state=state, limit=limit, cursor=cursor)
        except InvalidRequest:
            return bad_cursor()
        return DeliveryList(deliveries=[delivery_view(d) for d in page.deliveries],
                            next_cursor=page.next_cursor)

    @router.post("/v1/webhooks/deliveries/{event_id}/redeliver", status_code=202,
                 response_model=DeliveryView, responses=ERRORS,
                 summary="Send a delivery again now, with the same webhook-id, whatever its state")
    async def redeliver(event_id: str) -> Any:
        try:
            queued = await ops.redeliver(event_id)
        except UrlDisabled as exc:
            return error(409, exc.error_id, exc.message, **exc.details)
        if queued is None:
            return error(404, "delivery-not-found", f"no webhook delivery {event_id}",
                         event_id=event_id)
        return delivery_view(queued)

    @router.get("/v1/webhooks/disabled-urls", response_model=DisabledUrlList, responses=ERRORS,
                summary="Webhook URLs disabled by a 410 Gone, most recent first")
    async def disabled_urls(limit: Annotated[int, Query(ge=1, le=500)] = 100,
                            cursor: Cursor = None) -> Any:
        try:
            urls, next_cursor = await ops.disabled_urls(limit, cursor)
        except InvalidRequest:
            return bad_cursor()
        return DisabledUrlList(urls=[disabled_url_view(u) for u in urls], next_cursor=next_cursor)

    @router.delete("/v1/webhooks/disabled-urls/{url_id}", response_model=EnabledUrl, responses=ERRORS,
                   summary="Deliver to a disabled URL again")
    async def enable_url(url_id: str, redeliver: Annotated[bool, Query(description=(
            "Also queue again, now, the deliveries this URL's 410 disabled"))] = False) -> Any:
        enabled = await ops.enable_url(url_id, redeliver)
        if enabled is None:
            return error(404, "disabled-url-not-found", f"no disabled webhook URL {url_id}",
                         url_id=url_id)
        url, redelivered = enabled
        return EnabledUrl(**disabled_url_view(url).model_dump(), redelivered=redelivered)

    return router


def bad_cursor() -> JSONResponse:
    return error(400, "invalid-field", "cursor: not a cursor this API gave out", field="cursor")
