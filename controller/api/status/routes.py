"""/status and /metrics: no token needed (/metrics needs one with
api.metrics_auth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from controller.api.errors import UNAUTHORIZED, answers
from controller.api.interface import Operations
from controller.api.status.schemas import Status


def routes(ops: Operations) -> APIRouter:
    router = APIRouter(tags=["status"])

    @router.get("/status", response_model=Status, operation_id="getStatus",
                summary="Health of each component (no token needed)",
                responses={503: {"model": Status, "description": "Something fails: the switch "
                                 "is unreachable, the store cannot be written, the daemon drains"}})
    async def status() -> Any:
        """`ok` or `fail`, with a reason, for the switch, the store and the
        webhook outbox; 503 while anything fails. The store is proved with a
        write, at most every 5 s."""
        report = await ops.status()
        return JSONResponse(report.model_dump(), status_code=200 if report.status == "ok" else 503)

    @router.get("/metrics", response_class=Response, operation_id="getMetrics",
                summary="Prometheus metrics",
                responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                 "description": "Prometheus' text format, version 0.0.4"},
                           **answers(UNAUTHORIZED)})
    async def metrics() -> Response:
        """Calls by final status, active calls, leg setup times, webhook
        deliveries by outcome, switch reconnects. A token is needed only with
        api.metrics_auth (401 otherwise never)."""
        return Response(await ops.metrics_text(), media_type="text/plain; version=0.0.4")

    return router
