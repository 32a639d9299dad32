"""What a call's work costs cold, against hot in a loop (python -m bench.cold,
no lab, no root).

``bench.micro`` times each component hot: the same work back to back. The
daemon does a call's work in a few dozen wake-ups spread over the call's
life, with Asterisk, the phones and its other calls running in between. This
times two of ``bench.micro``'s components both ways:

* switch events: one recorded call's AMI stream through the daemon's reader,
  the translator and the call core, timed alone, back to back; then with the
  process asleep for a pause between calls; then busy for as long running
  other Python code (a loop that reads the clock);
* HTTP: POST /v1/calls through the daemon's own server (as ``bench.micro``),
  from a client in another process that sends them back to back, then with
  a pause between them. The server's CPU while idle (uvicorn's own timer),
  measured first, is taken out.

CPU is the process's; figures drift between runs on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence

import uvloop

from bench import micro
from controller.logs import setup as setup_logs

PAUSES = (0.002, 0.02)  # seconds between calls
IDLE_SECONDS = 3.0


def spin(seconds: float) -> None:
    """Keep the CPU busy on other code for ``seconds``."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def label(state: str, pause: float) -> str:
    return f"{state} {pause * 1000:g} ms:"


def switch_events_per_call(recorded: list[tuple[str, bytes]], calls: int, pause: float = 0.0,
                           between: Callable[[float], None] = time.sleep) -> float:
    """CPU seconds one of the ``recorded`` calls' AMI events take, with
    ``between(pause)`` after each call (not counted)."""
    spent = 0.0
    for number in range(calls):
        started = time.process_time()
        micro.full_path([recorded[number % len(recorded)]], rounds=1)
        spent += time.process_time() - started
        if pause:
            between(pause)
    return spent / calls


async def http_per_call(requests: int, pauses: Sequence[float]) -> dict[float, float]:
    """CPU seconds a POST /v1/calls takes the server, back to back (pause 0)
    and with each pause between requests, the server's idle CPU taken out."""
    per_request = {}
    async with micro.placing_server(micro.placed_call(micro.a_finished_call())) as port:
        started, began = time.process_time(), time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)
        idle_rate = (time.process_time() - started) / (time.monotonic() - began)
        for pause in (0.0, *pauses):
            started, began = time.process_time(), time.monotonic()
            await micro.send_requests(port, requests, pause)
            spent = time.process_time() - started - idle_rate * (time.monotonic() - began)
            per_request[pause] = spent / requests
    return per_request


def line(name: str, hot: float, figures: dict[str, float]) -> str:
    cold = "  ".join(f"{label} {seconds * 1000:.3f} ms ({seconds / hot:.1f}x)"
                     for label, seconds in figures.items())
    return f"[cold]   {name:<22} hot {hot * 1000:.3f} ms  {cold}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=600,
                        help="calls (recorded AMI streams, or POSTs) each way")
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    setup_logs("warning")
    recorded = micro.streams()
    switch_events_per_call(recorded, args.calls)  # warm
    hot = switch_events_per_call(recorded, args.calls)
    pauses = {}
    for pause in PAUSES:
        pauses[label("asleep", pause)] = switch_events_per_call(recorded, args.calls, pause)
        pauses[label("busy", pause)] = switch_events_per_call(recorded, args.calls, pause, spin)
    http = uvloop.run(http_per_call(max(1, args.calls // 3), PAUSES))
    print("[cold] CPU a call, hot (back to back) and with a pause between calls:")
    print(line("switch events", hot, pauses))
    print(line("HTTP (POST /v1/calls)", http[0.0],
               {label("asleep", pause): http[pause] for pause in PAUSES}))


if __name__ == "__main__":
    main()
