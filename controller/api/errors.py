"""Every error the API answers is JSON with a stable ``error_id``, a message
and details.

:data:`STATUS` is the one list of the ids the API answers, each with its HTTP
status: the exception tree's (:mod:`controller.errors`, the store's) and the
API's own (:class:`ApiErrorId`). The OpenAPI document's ``ErrorId`` enum is
built from it, and :func:`answers` lists, per operation, the errors it gives."""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from fastapi.responses import JSONResponse

from controller.errors import (
    AgentLimit,
    AttemptCapReached,
    BodyTooLarge,
    CallConnectError,
    CallRefused,
    DestinationRefused,
    DncFromFile,
    DoNotCall,
    Draining,
    GroupFromConfig,
    IdempotencyKeyReused,
    InvalidField,
    InvalidNumber,
    InvalidRequest,
    NotALiveCall,
    NumberFromConfig,
    OutsideCallingHours,
    RateLimited,
    SameLegs,
    SwitchActionFailed,
    SwitchUnavailable,
    TooManyActions,
    TrunkLimit,
    UrlDisabled,
    WhisperBusy,
    WhisperError,
)
from controller.jsonio import dumps
from controller.store import StoreError


class ApiErrorId(StrEnum):
    """The ids only the API answers (the others are its exceptions')."""

    UNAUTHORIZED = "unauthorized"
    CALL_NOT_FOUND = "call-not-found"
    CALL_ENDED = "call-ended"
    RECORDING_NOT_FOUND = "recording-not-found"
    RECORDING_LINK_INVALID = "recording-link-invalid"
    RECORDING_LINK_EXPIRED = "recording-link-expired"
    GROUP_NOT_FOUND = "group-not-found"
    DNC_NOT_FOUND = "dnc-not-found"
    NUMBER_NOT_FOUND = "number-not-found"
    DELIVERY_NOT_FOUND = "delivery-not-found"
    DISABLED_URL_NOT_FOUND = "disabled-url-not-found"
    NOT_FOUND = "not-found"  # no such path
    METHOD_NOT_ALLOWED = "method-not-allowed"
    INTERNAL_ERROR = "internal-error"  # a bug: the log has the traceback


_REFUSALS: tuple[type[CallRefused], ...] = (
    DoNotCall, DestinationRefused, OutsideCallingHours, IdempotencyKeyReused, AttemptCapReached,
    TrunkLimit, AgentLimit, RateLimited, WhisperBusy, Draining)
_EXCEPTIONS: dict[type[CallConnectError], int] = {
    InvalidRequest: 400, InvalidNumber: 400, SameLegs: 400, InvalidField: 400,
    GroupFromConfig: 409, DncFromFile: 409, NumberFromConfig: 409, NotALiveCall: 409,
    TooManyActions: 409,
    UrlDisabled: 409, BodyTooLarge: 413,
    SwitchUnavailable: 503, SwitchActionFailed: 503, WhisperError: 503, StoreError: 503,
    **{refusal: refusal.http_status for refusal in _REFUSALS},
}
# The exceptions' ids that never reach an API answer: abstract bases, and
# errors of the config, the core, outbound requests (webhooks, dial-whom) and
# the daemon's own failure (it exits).
NOT_ANSWERED = frozenset({"callconnect-error", "call-refused", "switch-error", "invalid-config",
                          "invalid-transition", "outbound-refused", "dial-whom-failed",
                          "actions-fetch-failed", "daemon-failed"})

STATUS: dict[str, int] = {
    **{exc.error_id: status for exc, status in _EXCEPTIONS.items()},
    ApiErrorId.UNAUTHORIZED: 401, ApiErrorId.CALL_NOT_FOUND: 404, ApiErrorId.CALL_ENDED: 409,
    ApiErrorId.RECORDING_NOT_FOUND: 404, ApiErrorId.RECORDING_LINK_INVALID: 403,
    ApiErrorId.RECORDING_LINK_EXPIRED: 410, ApiErrorId.GROUP_NOT_FOUND: 404,
    ApiErrorId.DNC_NOT_FOUND: 404, ApiErrorId.NUMBER_NOT_FOUND: 404,
    ApiErrorId.DELIVERY_NOT_FOUND: 404,
    ApiErrorId.DISABLED_URL_NOT_FOUND: 404, ApiErrorId.NOT_FOUND: 404,
    ApiErrorId.METHOD_NOT_ALLOWED: 405, ApiErrorId.INTERNAL_ERROR: 500,
}
# Sent with a Retry-After header (seconds) saying when trying again helps.
RETRY_AFTER = frozenset(refusal.error_id for refusal in (
    OutsideCallingHours, AttemptCapReached, TrunkLimit, AgentLimit, RateLimited, WhisperBusy))

# What most operations can answer: no valid token, or the store failed.
UNAUTHORIZED = ApiErrorId.UNAUTHORIZED.value
STORE_UNAVAILABLE = StoreError.error_id
# A request body: not JSON (invalid-request), breaking a rule, or too large.
BODY_ERRORS = (InvalidRequest.error_id, InvalidField.error_id, BodyTooLarge.error_id)

_SCHEMAS = "#/components/schemas/"


class OrjsonResponse(JSONResponse):
    """A JSON answer built by hand (errors, refusals: the 429s under
    overload; calls as stored, a page of them), rendered by orjson. Answers
    FastAPI renders from a response model need none: pydantic's serializer
    writes those."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


def error(error_id: str, message: str, **details: Any) -> OrjsonResponse:
    """The answer for ``error_id``, with its status (KeyError, a bug, for an id
    not in :data:`STATUS`: add it there, and the document follows)."""
    return OrjsonResponse({"error_id": error_id, "message": message, "details": details},
                          status_code=STATUS[error_id])


def failure(exc: CallConnectError) -> JSONResponse:
    """An exception as the API answers it; Retry-After when later helps."""
    response = error(exc.error_id, exc.message, **exc.details)
    if isinstance(exc, CallRefused) and exc.retry_after is not None:
        response.headers["Retry-After"] = retry_after_header(exc.retry_after)
    return response


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def answers(*error_ids: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses for these errors: one per status, its body an
    ErrorBody whose error_id is one of those ids, with Retry-After where sent."""
    by_status: dict[int, list[str]] = {}
    for error_id in dict.fromkeys(error_ids):
        by_status.setdefault(STATUS[error_id], []).append(error_id)
    responses: dict[int | str, dict[str, Any]] = {}
    for status, ids in sorted(by_status.items()):
        schema = {"allOf": [{"$ref": _SCHEMAS + "ErrorBody"},
                            {"properties": {"error_id": {"enum": sorted(ids)}}}]}
        responses[status] = {"description": "; ".join(sorted(ids)),
                             "content": {"application/json": {"schema": schema}}}
        retried = sorted(RETRY_AFTER.intersection(ids))
        if retried:
            responses[status]["headers"] = {"Retry-After": {
                "description": f"Seconds to wait before trying again (sent with {', '.join(retried)})",
                "schema": {"type": "integer", "minimum": 1}}}
    return responses


def error_schemas() -> dict[str, Any]:
    """The components every error answer refers to."""
    return {
        "ErrorId": {"type": "string", "enum": sorted(STATUS), "title": "ErrorId",
                    "description": "A stable id for each kind of error; the README explains each"},
        "ErrorBody": {
            "type": "object", "title": "ErrorBody", "required": ["error_id", "message", "details"],
            "properties": {
                "error_id": {"$ref": _SCHEMAS + "ErrorId"},
                "message": {"type": "string", "description": "What went wrong, for a person"},
                "details": {"type": "object", "additionalProperties": True, "description":
                            "Machine-readable specifics: field and rule for a refusal, the id "
                            "of what was not found, retry_after in seconds"}}},
    }


def ids_of(exceptions: Iterable[type[CallConnectError]]) -> tuple[str, ...]:
    return tuple(exc.error_id for exc in exceptions)
