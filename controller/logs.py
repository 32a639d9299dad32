"""structlog set-up: JSON lines for machines, readable lines on a terminal,
and no secret in either.

structlog's events and the standard library's records (uvicorn, asyncio,
panoramisk, warnings) go through one handler and one
:class:`structlog.stdlib.ProcessorFormatter`, so with JSON on every line
of the stream is one JSON object, whoever logged it."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

SECRET_KEYS = ("secret", "password", "token", "authorization", "api_key")
# The loggers of this package; every other logger is kept to its warnings.
OWN_LOGGERS = "controller"
OTHERS_LEVEL = logging.WARNING


def _drop_secrets(logger: Any, method: str,
                  event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(word in key.lower() for word in SECRET_KEYS):
            event[key] = "[redacted]"
    return event


class _Handler(logging.StreamHandler[TextIO]):
    """The one handler setup() installs (and replaces when called again)."""


def setup(level: str = "info", json: bool | None = None, stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    use_json = not out.isatty() if json is None else json
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    numeric = logging.getLevelName(level.upper())
    # Run on every event, structlog's and the standard library's alike.
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    # The console renderer draws a traceback itself; in JSON it is a field.
    exceptions: list[Any] = [structlog.processors.format_exc_info] if use_json else []
    handler = _Handler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _drop_secrets,
                    *exceptions, renderer],
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(OTHERS_LEVEL)
    logging.getLogger(OWN_LOGGERS).setLevel(numeric)
    logging.captureWarnings(True)  # warnings.warn() is a log line too, not stray text

