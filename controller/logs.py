"""structlog set-up: JSON lines for machines, readable lines on a terminal,
and no secret in either."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

SECRET_KEYS = ("secret", "password", "token", "authorization", "api_key")


def _drop_secrets(logger: Any, method: str,
                  event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(word in key.lower() for word in SECRET_KEYS):
            event[key] = "[redacted]"
    return event


def setup(level: str = "info", json: bool | None = None, stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    use_json = not out.isatty() if json is None else json
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # panoramisk logs through the standard library: keep its warnings only.
    logging.basicConfig(stream=out, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
