"""The log pipeline (controller/logs.py): the package's events and the
standard library's records as JSON lines on one stream, no secret in either."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from controller import logs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    yield out
    logs.setup("warning", json=True)  # back to the quiet default for the other tests


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_an_event_is_one_json_line_with_its_logger_level_and_time(stream: io.StringIO) -> None:
    logs.setup("info", json=True, stream=stream)
    structlog.get_logger("controller.calls.runner").info("call.transition", call_id="c1",
                                                         to="bridged")
    [line] = lines(stream)
    assert {k: line[k] for k in ("event", "level", "logger", "call_id", "to")} == {
        "event": "call.transition", "level": "info", "logger": "controller.calls.runner",
        "call_id": "c1", "to": "bridged"}
    assert line["timestamp"].endswith("Z")


def test_secrets_are_redacted(stream: io.StringIO) -> None:
    logs.setup("info", json=True, stream=stream)
    log = structlog.get_logger("controller.api")
    for _ in range(2):  # the second time from the cache of keys already judged
        log.info("api.login", api_token="hunter2", Password="hunter3", user="ops")
    assert "hunter" not in stream.getvalue()
    assert [(line["api_token"], line["Password"], line["user"]) for line in lines(stream)] == [
        ("[redacted]", "[redacted]", "ops")] * 2


def test_the_level_filters_own_events_and_others_keep_to_warnings(stream: io.StringIO) -> None:
    logs.setup("warning", json=True, stream=stream)
    own = structlog.get_logger("controller.daemon")
    own.info("daemon.ready")
    own.warning("daemon.slow", seconds=3)
    logging.getLogger("uvicorn.error").info("started")
    logging.getLogger("asyncio").warning("Executing %s took %.3f seconds", "<Task>", 0.25)
    assert [(line["event"], line["level"], line["logger"]) for line in lines(stream)] == [
        ("daemon.slow", "warning", "controller.daemon"),
        ("Executing <Task> took 0.250 seconds", "warning", "asyncio")]


def test_values_orjson_refuses_or_json_cannot_hold_are_still_written(
        stream: io.StringIO) -> None:
    logs.setup("info", json=True, stream=stream)

    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque>"

    log = structlog.get_logger("controller.x")
    log.info("big", value=2**70)
    log.info("surrogate", text="a\ud800b")
    log.info("opaque", value=Opaque())
    big, surrogate, opaque = lines(stream)
    assert big["value"] == 2**70
    assert surrogate["text"] == "a\ud800b"
    assert opaque["value"] == "<Opaque>"


def test_an_event_that_cannot_be_written_is_a_line_that_says_so(stream: io.StringIO) -> None:
    logs.setup("info", json=True, stream=stream)
    loop: list[Any] = []
    loop.append(loop)
    structlog.get_logger("controller.x").info("odd", value=loop)
    [line] = lines(stream)
    assert (line["event"], line["level"], line["logger"]) == ("odd", "info", "controller.x")
    assert "Circular reference" in line["log_error"]


def test_a_stream_that_cannot_be_written_never_fails_the_caller() -> None:
    closed = io.StringIO()
    logs.setup("info", json=True, stream=closed)
    closed.close()
    try:
        structlog.get_logger("controller.calls.runner").info("call.transition", to="bridged")
        structlog.get_logger("controller.calls.runner").error("call.failed")
        logging.getLogger("asyncio").warning("foreign")
    finally:
        logs.setup("warning", json=True)


def test_an_exception_is_a_field_with_its_traceback(stream: io.StringIO) -> None:
    logs.setup("info", json=True, stream=stream)
    try:
        raise ValueError("bad frame")
    except ValueError:
        structlog.get_logger("controller.backends").exception("ami.frame_failed")
    [line] = lines(stream)
    assert line["level"] == "error"
    assert "ValueError: bad frame" in line["exception"]


def test_lines_from_threads_and_both_kinds_never_interleave(stream: io.StringIO) -> None:
    logs.setup("info", json=True, stream=stream)
    payload = "x" * 2000  # long lines: a torn write would show

    def write(n: int) -> None:
        for i in range(300):
            if i % 2:
                structlog.get_logger("controller.t").info("own", n=n, i=i, payload=payload)
            else:
                logging.getLogger("foreign").warning("foreign %s %s %s", n, i, payload)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    written = lines(stream)
    assert len(written) == 4 * 300
    assert sum(1 for line in written if line["event"] == "own") == 4 * 150


def test_setting_up_again_replaces_the_handler(stream: io.StringIO) -> None:
    logs.setup("info", json=True, stream=io.StringIO())
    logs.setup("info", json=True, stream=stream)
    logging.getLogger("uvicorn.error").warning("once")
    assert [line["event"] for line in lines(stream)] == ["once"]


def test_a_traceback_on_a_terminal_shows_no_local_variables(stream: io.StringIO) -> None:
    logs.setup("info", json=False, stream=stream)

    def connect() -> None:
        password = "hunter2"
        raise ConnectionError(f"refused ({len(password)} characters sent)")

    try:
        connect()
    except ConnectionError:
        structlog.get_logger("controller.cli").exception("ami.login_failed")
    assert "ConnectionError: refused (7 characters sent)" in stream.getvalue()
    assert "hunter2" not in stream.getvalue()
