"""Every error the API answers is JSON with a stable ``error_id``, a message
and details."""

from __future__ import annotations

import math
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from controller.errors import CallRefused
from controller.jsonio import dumps


class ErrorBody(BaseModel):
    error_id: str
    message: str
    details: dict[str, Any] = {}


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 429, 503)}


class OrjsonResponse(JSONResponse):
    """A JSON answer built by hand (errors, refusals: the 429s under
    overload), rendered by orjson. Answers with a response model need none:
    FastAPI renders those with pydantic's own serializer."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


def error(http_status: int, error_id: str, message: str, **details: Any) -> OrjsonResponse:
    return OrjsonResponse({"error_id": error_id, "message": message, "details": details},
                          status_code=http_status)


def refusal(exc: CallRefused) -> JSONResponse:
    """A compliance rule or limit: its own status, with Retry-After when later helps."""
    response = error(exc.http_status, exc.error_id, exc.message, **exc.details)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = retry_after_header(exc.retry_after)
    return response


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
