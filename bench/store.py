"""The daemon on a big store (python -m bench.store; make bench runs it after
bench.micro): 1,000,000 ended calls and 100,000 do-not-call numbers, next to
an empty store. No lab and no root: the switch is the Event Socket peer of
tests/esl/peer/, a fake FreeSWITCH speaking the real wire protocol, run in a
process of its own; the daemon is the real one (``python -m controller
daemon``), a process on each store.

The big store is built once (bench/store_build.py: a few real calls through
the daemon, copied in bulk) and kept in WORKDIR/cache; it is built again when
the store's schema version changes. The calls the bench places in it are
deleted again when it ends, so every run sees the same store.

Measured, for each store:

* daemon start: from the process's start until /status answers 200 (the
  slowest of STARTS starts);
* POST /v1/calls answer time p99: CALLS calls (or --calls), paced at RATE calls/s per
  daemon (under its rate limit), the two daemons taking turns so that the
  machine's noise falls on both alike; every tenth call's leg B is on the big
  store's do-not-call list (403 there, placed on the empty store);
* GET /v1/calls page p99: the first page, the pages after it (each behind the
  cursor the page before gave), pages deep in the store (behind the cursor the
  API would give for the row at 10 %, 50 % and 90 % of the store's depth), and
  filtered lists (by status, by creation time, the active calls).

Every figure is printed with its goal and written to docs/bench/store.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import common
from bench.common import REPO, BenchRefused, percentile
from bench.hook_receiver import HookReceiver
from bench.store_build import PLACED_NUMBERS, build, dnc_number, placed_number, say
from bench.store_daemon import LEG_A, WHISPER, Peer, StoreDaemon
from controller.store.sqlite.cursor import encode_cursor

OUT = REPO / "docs" / "bench" / "store.json"
WORKDIR = REPO / ".bench" / "store"
STARTS = 3
CALLS = 600  # per store
WARM_FROM = 90_000  # the warm-up calls' leg B: placed_number(WARM_FROM + n)
RATE = 5.0  # calls/s per daemon
DNC_EVERY = 10  # every tenth call's leg B is on the big store's do-not-call list
PAGE_REPEATS = 60
POST_GOAL = 1.10  # big store's p99 / empty store's
PAGE_GOAL_MS = 20.0
START_GOAL_S = 5.0


def machine() -> dict[str, str]:
    return {**common.machine(), "sqlite": sqlite3.sqlite_version}


@dataclass
class Lane:
    """One store and the daemon running on it."""

    name: str
    store: Path
    daemon: StoreDaemon
    starts: list[float] = field(default_factory=list)
    posts_ms: list[float] = field(default_factory=list)
    refused_dnc: int = 0
    placed: list[str] = field(default_factory=list)
    pages_ms: dict[str, list[float]] = field(default_factory=dict)


async def start_lane(name: str, store: Path, workdir: Path, peer: Peer) -> Lane:
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    lane = Lane(name, store, StoreDaemon(store, folder, peer.port))
    for number in range(STARTS):
        lane.starts.append(await lane.daemon.start())
        if number < STARTS - 1:
            await lane.daemon.stop()
    say(f"{name}: daemon start {', '.join(f'{s:.2f}' for s in lane.starts)} s")
    return lane


async def post_call(lane: Lane, leg_b: str, hook: str, on_dnc: bool) -> None:
    started = time.perf_counter()
    answer = await lane.daemon.client.post("/v1/calls", json={
        "leg_a": LEG_A, "leg_b": leg_b, "whisper": WHISPER, "time_limit": 1,
        "webhook_url": hook}, headers={"Idempotency-Key": f"store-bench-{leg_b}-{time.time()}"})
    lane.posts_ms.append((time.perf_counter() - started) * 1000)
    if on_dnc and answer.status_code == 403 and "do-not-call" in answer.text:
        lane.refused_dnc += 1
        return
    if answer.status_code != 202:
        raise BenchRefused(f"{lane.name}: POST /v1/calls (leg B {leg_b}) answered "
                           f"{answer.status_code}: {answer.text[:500]}")
    lane.placed.append(answer.json()["call_uuid"])


def on_dnc(number: int) -> bool:
    """Whether the bench's ``number``-th call's leg B is a do-not-call number."""
    return number % DNC_EVERY == 0


async def place_calls(lanes: list[Lane], hook: str, dnc_store: Lane, calls: int) -> None:
    for lane in lanes:  # warm: the whisper rendered, the first connection made
        for warm in range(3):
            await post_call(lane, placed_number(WARM_FROM + warm), hook, on_dnc=False)
        lane.posts_ms.clear()
    interval = 1 / (RATE * len(lanes))
    next_at = time.perf_counter()
    for number in range(calls):
        refused = on_dnc(number)
        leg_b = dnc_number(number * 7) if refused else placed_number(number)
        for lane in lanes:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            await post_call(lane, leg_b, hook, on_dnc=refused and lane is dnc_store)
        if (number + 1) % 50 == 0:
            say(f"POST /v1/calls: {number + 1} / {calls} per store")
    for lane in lanes:
        await lane.daemon.wait_ended(lane.placed, timeout=120)


def deep_cursors(store: Path, status: str | None = None) -> list[str]:
    """The cursors the API would give for the rows at 10, 50 and 90 % of the
    store's depth (newest first), read from the file beside the daemon."""
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        [(count,)] = db.execute(f"SELECT count(*) FROM calls {where}", params).fetchall()
        cursors = []
        for share in (0.1, 0.5, 0.9):
            [(at, call_id)] = db.execute(
                f"SELECT created_at, call_id FROM calls {where} ORDER BY created_at DESC, "
                "call_id DESC LIMIT 1 OFFSET ?", (*params, int(count * share))).fetchall()
            cursors.append(encode_cursor(at, call_id))
    return cursors


async def page(lane: Lane, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    answer = await lane.daemon.client.get("/v1/calls", params=params)
    lane.pages_ms.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
    if answer.status_code != 200:
        raise BenchRefused(f"{lane.name}: GET /v1/calls {params} answered {answer.status_code}: "
                           f"{answer.text[:500]}")
    body: dict[str, Any] = answer.json()
    return body


Queries = dict[str, Callable[[int], dict[str, Any]]]


def page_queries(store: Path) -> Queries:
    """Each kind of page: its GET's query, given the repeat's number."""
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        [(first, last)] = db.execute("SELECT min(created_at), max(created_at) FROM calls").fetchall()
    middle = (first + last) / 2
    window = {"created_after": middle - 3600, "created_before": middle}
    deep = deep_cursors(store)
    deep_completed = deep_cursors(store, "completed")
    return {
        "first page": lambda _: {},
        "status=completed": lambda _: {"status": "completed"},
        "status=no-answer": lambda _: {"status": "no-answer"},
        "status=active": lambda _: {"status": "active"},
        "created in an hour mid-store": lambda _: window,
        "status=busy, created in that hour": lambda _: {**window, "status": "busy"},
        "deep (cursor at 10/50/90 %)": lambda n: {"cursor": deep[n % 3]},
        "status=completed, deep": lambda n: {"status": "completed",
                                             "cursor": deep_completed[n % 3]},
    }


async def list_pages(lanes: list[Lane]) -> None:
    """Every kind of page, the stores taking turns."""
    queries = {lane.name: page_queries(lane.store) for lane in lanes}
    for kind in queries[lanes[0].name]:
        for repeat in range(PAGE_REPEATS):
            for lane in lanes:
                await page(lane, kind, queries[lane.name][kind](repeat))
    chain = "next pages (the cursor chain)"
    cursors: dict[str, str | None] = {
        lane.name: (await page(lane, chain, {}))["next_cursor"] for lane in lanes}
    for _ in range(PAGE_REPEATS):
        for lane in lanes:
            if cursors[lane.name] is not None:
                cursors[lane.name] = (await page(lane, chain, {"cursor": cursors[lane.name]})
                                      )["next_cursor"]


def forget_placed(store: Path, placed: list[str]) -> None:
    """Take the bench's own calls out of the cached store again, with what
    they left beside them: the daily cap's counts of the numbers dialed, the
    marks of the agents (leg B) they were on. Those of earlier runs too, which
    did not take them out: each run added a few hundred rows that every call's
    bookkeeping then read, so the store grew slower run after run."""
    with closing(sqlite3.connect(store)) as db:
        db.execute("PRAGMA foreign_keys = ON")  # their timelines and deliveries go too
        db.executemany("DELETE FROM calls WHERE call_id = ?", [(c,) for c in placed])
        for table in ("number_attempts", "agent_calls"):
            db.execute(f"DELETE FROM {table} WHERE call_id NOT IN (SELECT call_id FROM calls)")
        db.executemany("DELETE FROM agents WHERE target = ? AND target NOT IN "
                       "(SELECT target FROM agent_calls)",
                       [(placed_number(n),) for n in range(PLACED_NUMBERS)])
        db.commit()


@dataclass
class Report:
    machine: dict[str, str]
    settings: dict[str, Any]
    figures: list[dict[str, Any]] = field(default_factory=list)

    def figure(self, name: str, value: float | None, goal: str, met: bool | None,
               unit: str = "", p50: float | None = None) -> None:
        self.figures.append({"figure": name, "value": value, "unit": unit, "goal": goal, "met": met,
                             "p50": p50})

    def latency(self, name: str, times: list[float], goal: str = "-",
                goal_ms: float | None = None) -> float:
        """A figure of p99 (and its p50, for comparison) of ``times`` in ms."""
        p99, p50 = percentile(times, 0.99), percentile(times, 0.5)
        if p99 is None or p50 is None:
            raise BenchRefused(f"{name}: nothing was measured")
        self.figure(name, round(p99, 2), goal, None if goal_ms is None else p99 <= goal_ms, "ms",
                    round(p50, 2))
        return p99


def figures(report: Report, empty: Lane, big: Lane) -> None:
    start = max(big.starts)
    report.figure("daemon start, empty store (slowest of 3)", round(max(empty.starts), 2), "-",
                  None, "s")
    report.figure("daemon start, 1 M calls + 100 k DNC (slowest of 3)", round(start, 2),
                  f"<= {START_GOAL_S:g} s", start <= START_GOAL_S, "s")
    empty_p99 = report.latency("POST /v1/calls p99, empty store", empty.posts_ms)
    big_p99 = report.latency(f"POST /v1/calls p99, 1 M calls ({big.refused_dnc} refused as "
                             "do-not-call)", big.posts_ms)
    ratio = big_p99 / empty_p99
    report.figure("POST /v1/calls p99, 1 M calls / empty store", round(ratio, 3),
                  f"<= {POST_GOAL:g}", ratio <= POST_GOAL)
    goal = f"<= {PAGE_GOAL_MS:g} ms"
    for kind, times in big.pages_ms.items():
        report.latency(f"GET /v1/calls p99, 1 M calls: {kind}", times, goal, PAGE_GOAL_MS)
    report.latency("GET /v1/calls p99, 1 M calls: every page above",
                   [t for times in big.pages_ms.values() for t in times], goal, PAGE_GOAL_MS)
    report.latency("GET /v1/calls p99, empty store: every page",
                   [t for times in empty.pages_ms.values() for t in times])


def print_table(report: Report) -> None:
    print()
    print(f"{'figure':<74} {'value':>18}  {'goal':<20} met  p50")
    for f in report.figures:
        value = "-" if f["value"] is None else f"{f['value']} {f['unit']}".strip()
        p50 = "" if f["p50"] is None else f"  {f['p50']} {f['unit']}"
        met = "-" if f["met"] is None else "yes" if f["met"] else "NO"
        print(f"{f['figure']:<74} {value:>18}  {f['goal']:<20} {met:<4}{p50}")
    print()


async def run(workdir: Path, calls: int) -> Report:
    big_store = await build(workdir / "cache", workdir)
    empty_store = workdir / "empty.sqlite3"
    for old in workdir.glob("empty.sqlite3*"):
        old.unlink()
    report = Report(machine(), {"calls": calls, "rate_per_daemon": RATE, "dnc_every": DNC_EVERY,
                                "starts": STARTS, "page_repeats": PAGE_REPEATS,
                                "big_store_bytes": big_store.stat().st_size})
    peer, receiver = Peer(), HookReceiver()
    peer.start()
    await receiver.start()
    lanes: list[Lane] = []
    try:
        lanes.append(await start_lane("empty", empty_store, workdir, peer))
        lanes.append(await start_lane("1M", big_store, workdir, peer))
        empty, big = lanes
        await place_calls(lanes, receiver.url, dnc_store=big, calls=calls)
        expected = sum(map(on_dnc, range(calls)))
        if big.refused_dnc != expected:
            raise BenchRefused(f"{big.refused_dnc} calls refused as do-not-call, not {expected}")
        await list_pages(lanes)
        figures(report, empty, big)
    finally:
        await asyncio.gather(*(lane.daemon.close() for lane in lanes))
        await receiver.stop()
        peer.stop()
        if len(lanes) == 2:
            forget_placed(lanes[1].store, lanes[1].placed)
    return report


async def guarded(work: Callable[[], Awaitable[Report]]) -> Report | None:
    try:
        return await work()
    except (BenchRefused, httpx.HTTPError) as exc:
        print(f"[store] stopped: {exc}", file=sys.stderr)
        return None


def calls_per_store(text: str) -> int:
    number = int(text)
    if not 1 <= number <= WARM_FROM:  # the warm-up calls' numbers come after
        raise argparse.ArgumentTypeError(f"must be 1 to {WARM_FROM}, not {number}")
    return number


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=WORKDIR,
                        help="where the stores go; the big one is kept in its cache/ (~12 GiB)")
    parser.add_argument("--calls", type=calls_per_store, default=CALLS,
                        help=f"calls placed per store (default {CALLS}); fewer for a quick "
                             "look at the pages (a POST p99 of few calls says little)")
    parser.add_argument("--out", type=Path, default=OUT,
                        help=f"where the figures go (default {OUT.relative_to(REPO)})")
    return parser.parse_args(argv)


def main() -> int:
    args = arguments()
    report = asyncio.run(guarded(lambda: run(args.workdir, args.calls)))
    if report is None:
        return 1
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": report.machine, "settings": report.settings,
                                    "figures": report.figures}, indent=2) + "\n")
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
