"""/status and /metrics: no token needed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from controller.api.interface import Operations
from controller.api.status.schemas import Status


def routes(ops: Operations) -> APIRouter:
    router = APIRouter()

    @router.get("/status", response_model=Status, responses={503: {"model": Status}},
                summary="Health of each component (no token needed)")
    async def status() -> Any:
        report = await ops.status()
        return JSONResponse(report.model_dump(), status_code=200 if report.status == "ok" else 503)

    @router.get("/metrics", response_class=Response, summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(await ops.metrics_text(), media_type="text/plain; version=0.0.4")

    return router
