"""The one webhook body: ``{"type": …, "timestamp": …, "data": …}``.

The event id is not in the body: it travels in the ``webhook-id`` header,
where Standard Webhooks signs it and a receiver drops repeats by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.ids import time_ordered_uuid
from controller.jsonio import dumps


def new_event_id() -> str:
    return f"evt_{time_ordered_uuid().hex}"


def envelope(event_type: str, data: Mapping[str, Any], at: float) -> dict[str, Any]:
    """The body of one webhook: its type, when it happened (Unix time) and its data."""
    return {"type": event_type, "timestamp": at, "data": dict(data)}


def encode(payload: Mapping[str, Any]) -> bytes:
    """The body as sent: compact UTF-8 JSON. The signature covers exactly
    these bytes."""
    return dumps(payload)
