"""The bench's CPU by part: which part a callback of the daemon's loop is
counted to, and the ms a call each part comes to between two counts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from bench.cpu_parts import (
    API,
    FLOW,
    REST,
    STORE,
    SWITCH,
    WEBHOOKS,
    Counting,
    part_of,
    parts_per_call,
)

BUSY_SECONDS = 0.03


def spin() -> None:
    started = time.thread_time()
    while time.thread_time() - started < BUSY_SECONDS:
        pass


# Named as the daemon's own: a task counts to the part its coroutines' names say.
class CallRunner:
    async def _follow(self) -> None:
        await asyncio.sleep(0)
        spin()


class Outbox:
    async def run(self) -> None:
        await asyncio.sleep(0)
        spin()


async def watched(part: Coroutine[Any, Any, None]) -> None:
    """As the daemon runs each of its parts: the part is what it awaits."""
    await part


async def other() -> None:
    await asyncio.sleep(0)
    spin()


def test_each_task_s_cpu_counts_to_the_part_its_coroutines_name() -> None:
    counting = Counting()
    counting.install()
    try:
        async def day() -> None:
            await asyncio.gather(CallRunner()._follow(), watched(Outbox().run()), other())

        asyncio.run(day())
    finally:
        counting.uninstall()
    seconds = counting.seconds
    for part in (FLOW, WEBHOOKS, REST):
        assert seconds[part] >= BUSY_SECONDS, seconds
    assert seconds[FLOW] < 2 * BUSY_SECONDS and seconds[WEBHOOKS] < 2 * BUSY_SECONDS, seconds
    assert counting.snapshot()["threads_seconds"]["MainThread"] >= 3 * BUSY_SECONDS


class AmiProtocol:
    pass


class Transport:
    def __init__(self, protocol: object) -> None:
        self._protocol = protocol

    def read_ready(self) -> None:
        pass


def test_a_transport_s_callbacks_count_to_its_protocol_s_part() -> None:
    assert part_of(Transport(AmiProtocol()).read_ready) == SWITCH
    assert part_of(Transport(object()).read_ready) == REST
    assert part_of(print) == REST


def test_parts_a_call_add_up_to_the_threads_cpu() -> None:
    before = {"callbacks_seconds": {API: 1.0, STORE: 0.5},
              "threads_seconds": {"MainThread": 3.0, "store-commit_0": 1.0, "asyncio_0": 0.1}}
    after = {"callbacks_seconds": {API: 1.3, STORE: 0.6, SWITCH: 0.2},
             "threads_seconds": {"MainThread": 3.8, "store-commit_0": 1.2, "asyncio_0": 0.1,
                                 "asyncio_1": 0.05}}
    parts = parts_per_call(before, after, calls=100)
    # 0.3 s of API over 100 calls; the store's callbacks and its commit thread;
    # the main thread's time in no timed callback, and the other threads, the rest's.
    assert parts == {API: 3.0, SWITCH: 2.0, FLOW: 0.0, STORE: 3.0, WEBHOOKS: 0.0,
                     REST: pytest.approx(2.5)}
    assert sum(parts.values()) == pytest.approx(1000 * (0.8 + 0.2 + 0.05) / 100)
