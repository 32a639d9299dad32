from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from controller.inbound.numbers import Number, NumberSettings


class NumberView(NumberSettings):
    number: str = Field(description="E.164")
    source: Literal["config", "api"] = Field(
        description="config: the config's [numbers] (read only here); api: made here")


class NumberList(BaseModel):
    numbers: list[NumberView]
    next_cursor: str | None


def number_view(number: Number) -> NumberView:
    return NumberView.model_validate(number.as_dict())
