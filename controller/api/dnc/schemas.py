from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from controller.calls.request import STRICT
from controller.compliance.dnc import MAX_REASON, DncEntry


class DncBody(BaseModel):
    model_config = STRICT

    reason: str = Field("", max_length=MAX_REASON,
                        description="Why the number may not be called; control, bidi and other "
                        "formatting characters are refused (400 invalid-field)")


class DncView(BaseModel):
    number: str
    reason: str
    source: Literal["file", "api"] = Field(description="file: compliance.dnc_file; api: added here")
    added_at: float | None


class DncList(BaseModel):
    entries: list[DncView]
    next_cursor: str | None


def dnc_view(entry: DncEntry) -> DncView:
    return DncView(number=entry.number, reason=entry.reason,
                   source="file" if entry.source == "file" else "api", added_at=entry.added_at)
