"""A call's recording as a file, for the token route (``GET
/v1/calls/{call_id}/recording``) and for the signed link the completion
webhook carries (``GET /v1/recordings/{call_id}``), which needs no token:
its signature and expiry are its authority (:mod:`controller.recording_links`)."""

from __future__ import annotations

import time
from pathlib import Path as FilePath
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse, JSONResponse

from controller.api.errors import STORE_UNAVAILABLE, ApiErrorId, answers, error
from controller.api.interface import Operations
from controller.errors import InvalidField
from controller.recording_links import LINK_PATH, SIGNATURE_CHARS, LinkCheck

log = structlog.get_logger(__name__)

WAV = {"content": {"audio/wav": {}}, "description": "The whole recording (WAV)"}
WAV_PART = {"content": {"audio/wav": {}}, "description": "The part a Range header asked for"}
# Call ids are UUIDs; the bound only keeps junk short.
MAX_CALL_ID_CHARS = 64
# Far past any link this daemon gives (year 36812), well inside SQLite's and JSON's integers.
MAX_EXPIRES = 2**40


async def recording_file(ops: Operations, call_id: str) -> FileResponse | JSONResponse:
    """The call's recording (Range requests answered 206), or 404 with why not."""
    stored = await ops.get_call(call_id)
    if stored is None:
        return error(ApiErrorId.CALL_NOT_FOUND, f"no call {call_id}", call_id=call_id)
    path = ((stored.result or {}).get("recording") or {}).get("path")
    if not path or not FilePath(path).is_file():
        return error(ApiErrorId.RECORDING_NOT_FOUND,
                     f"call {call_id} has no recording (none was made, or retention deleted it)",
                     call_id=call_id)
    return FileResponse(path, media_type="audio/wav", filename=f"{call_id}.wav")


def routes(ops: Operations) -> APIRouter:
    router = APIRouter(tags=["calls"])

    @router.get(LINK_PATH + "{call_id}", response_class=FileResponse,
                operation_id="getSignedRecording",
                responses={200: WAV, 206: WAV_PART,
                           **answers(InvalidField.error_id, STORE_UNAVAILABLE,
                                     ApiErrorId.RECORDING_LINK_INVALID,
                                     ApiErrorId.RECORDING_LINK_EXPIRED, ApiErrorId.CALL_NOT_FOUND,
                                     ApiErrorId.RECORDING_NOT_FOUND)},
                summary="A call's recording through the signed link of its completion webhook",
                description="Needs no token: the link's signature and expiry are checked "
                            "instead. 403 recording-link-invalid for a link altered or signed "
                            "with another key, 410 recording-link-expired once its time is up "
                            "(api.recording_link_hours after the call ended).")
    async def signed_recording(
            call_id: Annotated[str, Path(max_length=MAX_CALL_ID_CHARS)],
            expires: Annotated[int, Query(ge=0, le=MAX_EXPIRES, description="Unix time")],
            signature: Annotated[str, Query(max_length=SIGNATURE_CHARS)]) -> Any:
        checked = ops.recording_links.check(call_id, expires, signature, time.time())
        if checked is LinkCheck.INVALID:
            log.info("api.refused", path=LINK_PATH, call_id=call_id,
                     error_id="recording-link-invalid")
            return error(ApiErrorId.RECORDING_LINK_INVALID,
                         "this recording link is not valid: it was altered, or signed with a key "
                         "this daemon no longer has (its webhook signing secret changed)",
                         call_id=call_id)
        if checked is LinkCheck.EXPIRED:
            log.info("api.refused", path=LINK_PATH, call_id=call_id,
                     error_id="recording-link-expired")
            return error(ApiErrorId.RECORDING_LINK_EXPIRED,
                         f"this recording link expired at {expires} (Unix time); fetch the "
                         f"recording with an API token: GET /v1/calls/{call_id}/recording",
                         call_id=call_id, expired_at=expires)
        return await recording_file(ops, call_id)

    return router
