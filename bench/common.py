"""What every bench shares: a free port on loopback, percentiles, the
machine a run was made on, and the error that stops a run whose setup is
wrong."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class BenchRefused(RuntimeError):
    """The bench cannot go on: a request it meant to succeed was refused (not
    a 429 it measures), or a daemon it runs did not start. Its setup is
    wrong, and every figure after it would be too."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


REPO = Path(__file__).resolve().parents[1]
# The bench's daemons log as packaging/callconnect.service has a host's log
# (JSON, info: a dozen lines a call), so their CPU counts those lines.
DAEMON_LOG_ARGS = ("--json-logs", "--log-level", "info")


def percentile(values: Iterable[float], q: float) -> float | None:
    data = sorted(values)
    if not data:
        return None
    index = min(len(data) - 1, max(0, round(q * (len(data) - 1))))
    return data[index]


def machine() -> dict[str, str]:
    """The machine and Python a run was made on, and when. The Python names
    its installation: builds of one version differ in speed (Debian's is
    built with PGO and LTO, pyenv's by default without)."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory_gib": str(round(
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)),
        "kernel": platform.release(), "python": f"{platform.python_version()} ({sys.base_prefix})",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


async def connect_watching(manager: Any, patterns: Iterable[str]) -> None:
    """Log a bench observer (a panoramisk Manager) in to the lab's AMI, then
    narrow what Asterisk sends it to the events matching ``patterns`` (a
    Filter each; any one lets an event through), so the measuring process
    stays light under load."""
    await manager.connect()
    login = manager.authenticated_future
    if login is not None:
        await asyncio.wait_for(login, 10)
    for pattern in patterns:
        await asyncio.wait_for(manager.send_action(
            {"Action": "Filter", "Operation": "Add", "Filter": pattern}), 10)
