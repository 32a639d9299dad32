from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ComponentStatus(BaseModel):
    status: Literal["ok", "fail"]
    reason: str | None = None


class Status(BaseModel):
    status: Literal["ok", "fail"]
    version: str
    draining: bool
    active_calls: int
    components: dict[str, ComponentStatus]
