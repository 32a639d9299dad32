"""structlog set-up: JSON lines for machines, readable lines on a terminal,
and no secret in either.

The package's own events go through structlog alone: its processors, then
one write. They used to go through the standard library too, which cost
about five times as much a line (a ``LogRecord`` made and copied, the
caller's frame looked up), and a daemon logging at info writes about a dozen
lines a call. The standard library's records (uvicorn, asyncio, panoramisk,
warnings) go through one handler and one
:class:`structlog.stdlib.ProcessorFormatter` with the same processors. Both
write through one writer, under its lock, so with JSON on every line of the
stream is one JSON object, whoever logged it and from whichever thread."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog

from controller.jsonio import dumps_text

SECRET_KEYS = ("secret", "password", "token", "authorization", "api_key")
# The loggers of this package; every other logger is kept to its warnings.
OWN_LOGGERS = "controller"
OTHERS_LEVEL = logging.WARNING

# What a line keeps of an event that could not be written whole.
_KEPT_WHEN_UNWRITABLE = ("event", "level", "logger", "timestamp")


@functools.lru_cache(maxsize=1024)  # events use a few dozen keys, over and over
def _is_secret(key: str) -> bool:
    return any(word in key.lower() for word in SECRET_KEYS)


def _drop_secrets(logger: Any, method: str,
                  event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in event:
        if _is_secret(key):
            event[key] = "[redacted]"
    return event


def _json_line(event: Any, default: Callable[[Any], Any]) -> str:
    """``event`` as one line of JSON (controller.jsonio: orjson, and the
    standard library for what orjson refuses); a value JSON has no form for
    is written as structlog writes it (``default``: its ``__structlog__()``
    or its ``repr``). An event neither can write (a value that contains
    itself) becomes a line that says so, since a log call never fails the
    work that made it."""
    try:
        return dumps_text(event, default)
    except (TypeError, ValueError) as exc:
        return dumps_text({key: event.get(key) for key in _KEPT_WHEN_UNWRITABLE}
                          | {"log_error": f"{type(exc).__name__}: {exc}"}, repr)


class _Writer(structlog.WriteLogger):
    """structlog's writer with the name of the logger it serves, which
    ``add_logger_name`` reads (``structlog.get_logger(__name__)``). A stream
    that cannot be written (closed, or a full disk, or journald gone) loses
    the line, never the caller's work, as the standard library's handlers
    do."""

    def __init__(self, file: TextIO, name: str = "") -> None:
        super().__init__(file)
        self.name = name

    def msg(self, message: str) -> None:
        try:
            super().msg(message)
        except (OSError, ValueError):  # ValueError: the file is closed
            return

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _Handler(logging.Handler):
    """The one handler setup() installs (and replaces when called again): each
    record, formatted, goes out through the same writer as structlog's
    events."""

    def __init__(self, writer: _Writer) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.msg(self.format(record))
        except Exception:  # a log line that cannot be written never stops the caller
            self.handleError(record)


def setup(level: str = "info", json: bool | None = None, stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    use_json = not out.isatty() if json is None else json
    # On a terminal, a traceback without the frames' local variables: rich's,
    # structlog's default when rich is installed, shows them, secrets included.
    renderer: Any = (structlog.processors.JSONRenderer(serializer=_json_line) if use_json
                     else structlog.dev.ConsoleRenderer(
                         exception_formatter=structlog.dev.plain_traceback))
    numeric = logging.getLevelName(level.upper())
    # Run on every event, structlog's and the standard library's alike.
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # The console renderer draws a traceback itself; in JSON it is a field.
    exceptions: list[Any] = [structlog.processors.format_exc_info] if use_json else []
    structlog.configure(
        processors=[*shared, _drop_secrets, *exceptions, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *args: _Writer(out, args[0] if args else ""),
        cache_logger_on_first_use=False,
    )
    handler = _Handler(_Writer(out))
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
