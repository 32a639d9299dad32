"""The daemon's CPU per call, part by part, measured on the real lane.

``python -m bench.cpu_parts <the controller's arguments>`` runs the daemon
with every callback of its event loop timed on the thread's CPU clock and
counted to the part of the daemon it runs:

* api: the HTTP requests, whole (a POST's checks, routing, compliance and the
  call's creation run inside it), and uvicorn's own timer;
* switch events: reading and routing the AMI (or Event Socket) stream;
* call flow: each call's core and runner, and the switch actions they send;
* store: writing calls, their timelines and deliveries, and the commits
  (the thread that waits on the disk included);
* webhooks: the outbox and its HTTP client;
* event loop and the rest: the loop's own work (polling, waking futures)
  and anything not above.

On SIGUSR2 it writes the counts so far, as JSON, to the file named by
``CALLCONNECT_BENCH_CPU_PARTS``. uvloop runs callbacks in C, where they
cannot be timed, so this daemon runs on asyncio's own loop, which costs more
a callback: the parts' shares are what this is for; the CPU per call is the
uvloop lane's. ``bench.micro`` times each component alone, hot in a loop,
which is what it costs at best; these parts add up to what a call costs.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import json
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV = "CALLCONNECT_BENCH_CPU_PARTS"
API, SWITCH, FLOW, STORE, WEBHOOKS, REST = ("api", "switch events", "call flow", "store",
                                            "webhooks", "event loop and the rest")
PARTS = (API, SWITCH, FLOW, STORE, WEBHOOKS, REST)
# A task's part, by the qualified names of the coroutines it is awaiting (its
# own first): the first name with one of these prefixes decides.
TASK_PARTS = (
    ("RequestResponseCycle.", API), ("Server.", API),
    ("CallRunner.", FLOW), ("_keep_books", FLOW), ("LiveCalls.", FLOW),
    # A runner waits for its call's next event through wait_for, in a task of its own.
    ("Queue.get", FLOW),
    ("StoreListener.", STORE), ("Sqlite", STORE),
    ("Outbox.", WEBHOOKS), ("ClientRequest.", WEBHOOKS),
)
# A transport's callbacks, by its protocol's class.
PROTOCOL_PARTS = {"AmiProtocol": SWITCH, "EventSocketProtocol": SWITCH,
                  "GuardedProtocol": API, "HttpToolsProtocol": API, "ResponseHandler": WEBHOOKS}
COMMIT_THREAD = "store-commit"
AWAIT_DEPTH = 8


def awaiting(coroutine: Any) -> list[str]:
    """The qualified names of a coroutine and those it awaits, outermost first."""
    names = []
    for _ in range(AWAIT_DEPTH):
        name = getattr(coroutine, "__qualname__", None)
        if name is None:
            break
        names.append(name)
        coroutine = getattr(coroutine, "cr_await", None)
    return names


def part_of(callback: Callable[..., Any]) -> str:
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        for name in awaiting(owner.get_coro()):
            for prefix, part in TASK_PARTS:
                if name.startswith(prefix):
                    return part
        return REST
    protocol = getattr(owner, "_protocol", None)
    if protocol is not None:
        return PROTOCOL_PARTS.get(type(protocol).__name__, REST)
    return REST


class Counting:
    """CPU seconds of the loop's callbacks by part, and of the threads by name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.original = asyncio.events.Handle._run

    def install(self) -> None:
        run = self.original
        seconds, clock = self.seconds, time.thread_time

        def timed(handle: asyncio.events.Handle) -> None:
            # Told apart before it runs: a task's last step leaves nothing awaited.
            part = part_of(handle._callback)  # type: ignore[attr-defined]
            started = clock()
            try:
                run(handle)
            finally:
                seconds[part] += clock() - started

        asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        asyncio.events.Handle._run = self.original  # type: ignore[method-assign]

    def snapshot(self) -> dict[str, Any]:
        threads = {}
        for thread in threading.enumerate():
            if thread.ident is not None:
                clock = time.pthread_getcpuclockid(thread.ident)
                threads[thread.name] = time.clock_gettime(clock)
        return {"callbacks_seconds": dict(self.seconds), "threads_seconds": threads}


def parts_per_call(before: dict[str, Any], after: dict[str, Any], calls: int) -> dict[str, float]:
    """ms a call by part between two snapshots: the main thread's CPU not in a
    timed callback is the loop's own; the commit thread's is the store's, any
    other thread's the rest's."""
    def delta(kind: str, name: str) -> float:
        return float(after[kind].get(name, 0.0) - before[kind].get(name, 0.0))

    seconds = {part: delta("callbacks_seconds", part) for part in PARTS}
    main = delta("threads_seconds", "MainThread")
    seconds[REST] += main - sum(seconds.values())
    for name in after["threads_seconds"]:
        if name != "MainThread":
            seconds[STORE if name.startswith(COMMIT_THREAD) else REST] += delta(
                "threads_seconds", name)
    return {part: round(1000 * value / calls, 3) for part, value in seconds.items()}


async def read_snapshot(pid: int, path: Path, timeout: float = 10.0) -> dict[str, Any]:
    """Ask the daemon (SIGUSR2) for its counts and read them."""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the counted daemon wrote no CPU counts to {path} within "
                               f"{timeout:g} s; see the bench's daemon.log")
        await asyncio.sleep(0.05)
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def main() -> int:
    import uvloop

    from controller.cli import main as controller_main

    target = Path(os.environ[ENV])
    counting = Counting()
    counting.install()

    def write(signum: int, frame: Any) -> None:
        scratch = target.with_suffix(".tmp")
        scratch.write_text(json.dumps(counting.snapshot()))
        scratch.replace(target)  # whole, or not there yet

    signal.signal(signal.SIGUSR2, write)
    # The daemon runs on asyncio's own loop: uvloop's callbacks cannot be timed.
    uvloop.run = asyncio.run  # type: ignore[assignment]
    return controller_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
