from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, Strict

from controller.calls.request import (
    DEFAULT_CALLS_PERIOD_HOURS,
    MAX_AGENT_CHARS,
    MAX_CALLS_PERIOD_HOURS,
    MAX_GROUP_AGENTS,
    MAX_RING_TIMEOUT,
    MIN_RING_TIMEOUT,
    STRICT,
    Fallbacks,
    Strategy,
)


class GroupBody(BaseModel):
    model_config = STRICT

    strategy: Annotated[Strategy, Strict(False)] = Strategy.ROUND_ROBIN
    agents: list[Annotated[str, Field(max_length=MAX_AGENT_CHARS)]] = Field(
        min_length=1, max_length=MAX_GROUP_AGENTS, description="Numbers, sip: URIs or "
        "endpoint:NAMEs, in priority order")
    ring_timeout: int | None = Field(None, ge=MIN_RING_TIMEOUT, le=MAX_RING_TIMEOUT)
    calls_period_hours: float = Field(DEFAULT_CALLS_PERIOD_HOURS, gt=0, le=MAX_CALLS_PERIOD_HOURS,
                                      description="least-calls counts calls over this period")
    fallbacks: Fallbacks | None = None


class AgentView(BaseModel):
    target: str
    on_call: str | None
    last_ended_at: float | None
    calls_in_period: int


class GroupView(BaseModel):
    name: str
    strategy: str
    agents: list[str]
    ring_timeout: int | None
    calls_period_hours: float
    fallbacks: dict[str, Any]
    source: Literal["config", "api"]
    agent_states: list[AgentView] = []


class GroupList(BaseModel):
    groups: list[GroupView]
