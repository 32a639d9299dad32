"""The daemon's life as a supervisor sees it, on the real daemon process (its
switch unreachable, so no lab):

* an API address that is taken, or a switch task that dies, ends the daemon
  at once, non-zero, with one log line that says why and what to do;
* READY reaches systemd's notify socket (a unix datagram socket the test
  binds) while the switch is still down, then WATCHDOG=1 every half
  WATCHDOG_USEC, and STOPPING=1 on SIGTERM;
* every line the daemon writes is JSON, uvicorn's own included, and no
  secret is in any of them."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.switch_down import serving, switch_down_env
from tests.lab.conftest import SIGNING_SECRET, TOKEN, DaemonProcess

EXIT_WAIT = 30.0  # a bound for the test, not a goal: a hang fails instead of blocking


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for process in started:
        process.stop()


def start(daemons: list[DaemonProcess], tmp: Path, **env: str) -> DaemonProcess:
    process = DaemonProcess(tmp / "store.sqlite3", tmp / "daemon.log", switch_down_env(tmp, **env))
    process.start()
    daemons.append(process)
    return process


def log_lines(process: DaemonProcess) -> list[dict[str, Any]]:
    """Every line of the daemon's stdout and stderr, each of which must be JSON."""
    lines = []
    for number, line in enumerate(process.log.read_text().splitlines(), 1):
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"line {number} of the daemon's output is not JSON: {line!r}")
        assert isinstance(lines[-1], dict), line
    return lines


def exit_code(process: DaemonProcess) -> int:
    try:
        return process.wait(EXIT_WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the daemon did not exit: {process.log.read_text()[-2000:]}")


def test_a_taken_api_port_ends_the_daemon_saying_which_address(
        daemons: list[DaemonProcess], tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        process = start(daemons, tmp_path, CALLCONNECT_API_PORT=str(port))
        code = exit_code(process)
    assert code != 0
    [failed] = [line for line in log_lines(process) if line["event"] == "daemon.failed"]
    assert failed["level"] == "error"
    assert failed["error_id"] == "daemon-failed"
    assert failed["details"]["address"] == f"127.0.0.1:{port}"
    assert "already in use" in failed["message"]
    assert "api.port" in failed["message"]  # what to change


def test_a_switch_task_that_dies_ends_the_daemon_with_the_reason(
        daemons: list[DaemonProcess], tmp_path: Path) -> None:
    # Port 70000 made the switch task die of an OverflowError, and /status
    # said "not connected yet" for ever; the daemon must stop and say why
    # (or refuse the setting when it reads the config).
    process = start(daemons, tmp_path, CALLCONNECT_ASTERISK_PORT="70000")
    assert exit_code(process) != 0
    output = process.log.read_text()
    assert "asterisk" in output and "port" in output, output[-2000:]


def notify_socket(path: Path) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(EXIT_WAIT)
    return listener


def until(listener: socket.socket, key: str) -> list[dict[str, str]]:
    """The messages up to the first with ``key``=1, that one last."""
    messages = [next_message(listener)[1]]
    while messages[-1].get(key) != "1":
        messages.append(next_message(listener)[1])
    return messages


def next_message(listener: socket.socket) -> tuple[float, dict[str, str]]:
    """The time it arrived, and its KEY=VALUE lines."""
    try:
        data = listener.recv(4096).decode()
    except TimeoutError:
        pytest.fail("no message on the notify socket")
    return time.monotonic(), dict(line.split("=", 1) for line in data.splitlines() if line)


def test_ready_comes_with_the_switch_down_then_watchdog_pings_then_stopping(
        daemons: list[DaemonProcess], tmp_path: Path) -> None:
    watchdog_usec = 1_000_000  # pings every 0.5 s
    with notify_socket(tmp_path / "notify") as listener:
        process = start(daemons, tmp_path, NOTIFY_SOCKET=str(tmp_path / "notify"),
                        WATCHDOG_USEC=str(watchdog_usec), WATCHDOG_PID="")
        *before, ready = until(listener, "READY")
        assert not [m for m in before if "WATCHDOG" in m], before  # pings start at READY
        assert f"127.0.0.1:{process.port}" in ready["STATUS"]
        status = httpx.get(f"{process.url}/status", timeout=10)
        assert status.status_code == 503
        assert status.json()["components"]["switch"]["status"] == "fail"

        pings: list[float] = []
        while len(pings) < 4:
            at, message = next_message(listener)
            if message.get("WATCHDOG") == "1":
                pings.append(at)
        # Paced by the interval, not sent in a tight loop.
        assert pings[-1] - pings[0] >= 3 * (watchdog_usec / 2e6) * 0.5

        process.signal(signal.SIGTERM)
        until(listener, "STOPPING")
        assert exit_code(process) == 0


def test_no_watchdog_pings_for_another_process(
        daemons: list[DaemonProcess], tmp_path: Path) -> None:
    with notify_socket(tmp_path / "notify") as listener:
        process = start(daemons, tmp_path, NOTIFY_SOCKET=str(tmp_path / "notify"),
                        WATCHDOG_USEC="200000", WATCHDOG_PID="1")
        messages = until(listener, "READY")
        serving(process)
        process.signal(signal.SIGTERM)
        messages += until(listener, "STOPPING")
        assert exit_code(process) == 0
    assert not [m for m in messages if "WATCHDOG" in m], messages


def test_every_line_is_json_uvicorn_included_and_no_secret_shows(
        daemons: list[DaemonProcess], tmp_path: Path) -> None:
    process = start(daemons, tmp_path)
    serving(process)
    with socket.create_connection(("127.0.0.1", process.port), timeout=10) as client:
        client.sendall(b"NOT HTTP AT ALL\r\n\r\n")  # uvicorn logs a warning about it
        assert client.recv(4096).startswith(b"HTTP/1.1 400")
    process.signal(signal.SIGTERM)
    assert exit_code(process) == 0
    lines = log_lines(process)
    uvicorn = [line for line in lines if line.get("logger", "").startswith("uvicorn")]
    assert uvicorn and uvicorn[0]["event"] == "Invalid HTTP request received.", lines
    assert uvicorn[0]["level"] == "warning" and uvicorn[0]["timestamp"]
    assert [line["event"] for line in lines][-2:] == ["daemon.stopped", "daemon.exit"]
    text = process.log.read_text()
    assert TOKEN not in text and SIGNING_SECRET not in text

