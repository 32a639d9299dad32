"""The store bench's big store: 1,000,000 ended calls and 100,000 do-not-call
numbers in the store's real schema, built once and kept in a cache folder.

Its rows are what the daemon itself writes: a few real calls (one per final
status) are placed through the daemon's API against the Event Socket peer,
with a completion webhook to a receiver on loopback, and a number is put on
the do-not-call list over the API. Those rows (the call, its timeline, its
webhook deliveries; the do-not-call entry) are then copied in bulk, each copy
with an id, a time, a leg B number and an event id of its own. The copy keeps
the times inside the JSON texts (the snapshot's, the result's) as the seed
call had them; only the columns the store queries are spread over time."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.hook_receiver import HookReceiver
from bench.store_daemon import LEG_A, WHISPER, Peer, StoreDaemon
from controller.store.sqlite.schema import SCHEMA_VERSION

CALLS = 1_000_000
DNC_NUMBERS = 100_000
SPAN_SECONDS = 20 * 86400.0  # the calls' creation times: the 20 days before the build
BATCH = 20_000  # calls per transaction
# Leg B of each seed call, by the peer's number plan (the last 4 digits'
# first two): 02 answers, 03 never answers, 04 is busy, 05 declines.
SEED_LEG_B = ("+27115550202", "+27115550301", "+27115550401", "+27115550501")
SEED_DNC = "+27115550999"
DNC_REASON = "asked not to be called"
CALL_COLUMNS = ("call_id, created_at, updated_at, state, status, request, snapshot, result, "
                "idempotency_key, idempotency_scope, request_hash")
TIMELINE_COLUMNS = "call_id, at, kind, data"
DELIVERY_COLUMNS = ("event_id, call_id, url, event_type, payload, created_at, next_attempt_at, "
                    "state, attempts, last_status_code, last_error, delivered_at")


def say(text: str) -> None:
    print(f"[store] {text}", flush=True)


PLACED_NUMBERS = 100_000


def placed_number(n: int) -> str:
    """Leg B of the bench's n-th call (n < PLACED_NUMBERS): +27 11 NNN 02 NN,
    the peer's answering phones, never on the do-not-call list."""
    return f"+2711{n // 100:03d}02{n % 100:02d}"


def dnc_number(n: int) -> str:
    """The n-th do-not-call number (n < 100,000): +27 12 NNN 02 NN."""
    return f"+2712{n // 100:03d}02{n % 100:02d}"


def cached_store(cache: Path) -> Path:
    return cache / f"store-{CALLS}-calls-{DNC_NUMBERS}-dnc-schema-v{SCHEMA_VERSION}.sqlite3"


def schema_version(path: Path) -> int | None:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            [(version,)] = db.execute("SELECT version FROM schema_version").fetchall()
            [(calls,)] = db.execute("SELECT max(rowid) FROM calls").fetchall()
        return int(version) if calls and calls >= CALLS else None
    except (sqlite3.Error, ValueError):
        return None


async def seed(path: Path, workdir: Path, peer: Peer) -> None:
    """The daemon's own rows: one call per final status, and one do-not-call number."""
    receiver = HookReceiver({})
    await receiver.start()
    daemon = StoreDaemon(path, workdir, peer.port)
    try:
        await daemon.start()
        answer = await daemon.client.put(f"/v1/dnc/{SEED_DNC}", json={"reason": DNC_REASON})
        if answer.status_code != 200:
            raise RuntimeError(f"PUT /v1/dnc answered {answer.status_code}: {answer.text[:300]}")
        call_ids = []
        for number, leg_b in enumerate(SEED_LEG_B):
            answer = await daemon.client.post("/v1/calls", json={
                "leg_a": LEG_A, "leg_b": leg_b, "whisper": WHISPER, "ring_timeout": 1,
                "time_limit": 1, "webhook_url": receiver.url},
                headers={"Idempotency-Key": f"seed-{number}"})
            if answer.status_code != 202:
                raise RuntimeError(f"seed call: POST /v1/calls answered {answer.status_code}: "
                                   f"{answer.text[:300]}")
            call_ids.append(answer.json()["call_uuid"])
        await daemon.wait_ended(call_ids)
        deadline = time.monotonic() + 30
        while not receiver.webhooks.keys() >= set(call_ids):  # their deliveries are delivered
            if time.monotonic() > deadline:
                raise RuntimeError("the seed calls' completion webhooks did not arrive in 30 s")
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # the outbox marks them delivered after the answer
    finally:
        await daemon.close()
        await receiver.stop()


@dataclass
class SeedCall:
    call: tuple[Any, ...]
    timeline: list[tuple[Any, ...]]
    deliveries: list[tuple[Any, ...]]
    leg_b: str

    def copy(self, call_id: str, at: float, leg_b: str) -> tuple[tuple[Any, ...], list[tuple[Any, ...]],
                                                                  list[tuple[Any, ...]]]:
        """This call's rows as call ``call_id``, created at ``at``, to ``leg_b``."""
        seed_id = self.call[0]
        shift = at - self.call[1]

        def text(value: Any) -> Any:
            if isinstance(value, str):
                return value.replace(seed_id, call_id).replace(self.leg_b, leg_b)
            return value
        # Each copy has a key of its own: a key is unique per token.
        call = (call_id, at, self.call[2] + shift, *map(text, self.call[3:8]),
                call_id if self.call[8] is not None else None, *self.call[9:])
        timeline = [(call_id, row[1] + shift, row[2], text(row[3])) for row in self.timeline]
        deliveries = []
        for row in self.deliveries:
            event_id = f"evt_{uuid.uuid4().hex}"
            deliveries.append((event_id, call_id, row[2], row[3],
                               text(row[4]).replace(row[0], event_id), row[5] + shift,
                               row[6] + shift, *row[7:11], row[11] and row[11] + shift))
        return call, timeline, deliveries


def read_seed(db: sqlite3.Connection) -> tuple[list[SeedCall], tuple[Any, ...]]:
    seeds = []
    for row in db.execute(f"SELECT {CALL_COLUMNS} FROM calls ORDER BY created_at").fetchall():
        timeline = db.execute(f"SELECT {TIMELINE_COLUMNS} FROM timeline WHERE call_id = ? "
                              "ORDER BY id", (row[0],)).fetchall()
        deliveries = db.execute(f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE call_id = ? "
                                "ORDER BY created_at", (row[0],)).fetchall()
        leg_b = next(n for n in SEED_LEG_B if n in row[5])
        seeds.append(SeedCall(tuple(row), timeline, deliveries, leg_b))
    if len(seeds) != len(SEED_LEG_B) or any(s.call[3] != "ended" for s in seeds):
        raise RuntimeError(f"the seed calls did not all end: {[s.call[3:5] for s in seeds]}")
    [dnc] = db.execute("SELECT number, reason, added_at FROM dnc").fetchall()
    return seeds, tuple(dnc)


def copies(seeds: list[SeedCall], start: int, stop: int, first_at: float, step: float
           ) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    for n in range(start, stop):
        yield seeds[n % len(seeds)].copy(str(uuid.uuid4()), first_at + n * step,
                                         placed_number(n % PLACED_NUMBERS))


def bulk_copy(path: Path) -> None:
    """Fill the seeded file up to CALLS calls and DNC_NUMBERS numbers."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = OFF")  # a failed build is built again
        db.execute("PRAGMA cache_size = -1000000")  # 1 GiB: the ids' index is written at random
        seeds, dnc = read_seed(db)
        # Built again after the copy, in one pass each: quicker than kept up row by row.
        indexes = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND "
                             "sql IS NOT NULL AND tbl_name IN ('calls', 'timeline', "
                             "'deliveries')").fetchall()
        for name, _ in indexes:
            db.execute(f"DROP INDEX {name}")
        first_at = time.time() - SPAN_SECONDS
        step = SPAN_SECONDS / CALLS
        started = time.monotonic()
        done = len(seeds)
        while done < CALLS:
            upto = min(CALLS, done + BATCH)
            calls, timeline, deliveries = [], [], []
            for call, entries, sent in copies(seeds, done, upto, first_at, step):
                calls.append(call)
                timeline += entries
                deliveries += sent
            db.execute("BEGIN")
            db.executemany(f"INSERT INTO calls ({CALL_COLUMNS}) VALUES ({', '.join('?' * 11)})",
                           calls)
            db.executemany(f"INSERT INTO timeline ({TIMELINE_COLUMNS}) VALUES (?, ?, ?, ?)",
                           timeline)
            db.executemany(f"INSERT INTO deliveries ({DELIVERY_COLUMNS}) "
                           f"VALUES ({', '.join('?' * 12)})", deliveries)
            db.execute("COMMIT")
            done = upto
            rate = (done - len(seeds)) / (time.monotonic() - started)
            print(f"\r[store] calls {done:>9,} / {CALLS:,} ({rate:,.0f}/s, "
                  f"{(CALLS - done) / rate:.0f} s left)   ", end="", flush=True)
        print(flush=True)
        say(f"indexing ({len(indexes)} indexes)")
        for _, sql in indexes:
            db.execute(sql)
        db.execute("BEGIN")
        db.executemany("INSERT INTO dnc (number, reason, added_at) VALUES (?, ?, ?)",
                       ((dnc_number(n), dnc[1], dnc[2] + n) for n in range(DNC_NUMBERS - 1)))
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def build(cache: Path, workdir: Path) -> Path:
    """The cached store, built if missing or of another schema version."""
    target = cached_store(cache)
    if target.exists() and schema_version(target) == SCHEMA_VERSION:
        say(f"reusing {target} ({target.stat().st_size / 2**30:.1f} GiB)")
        return target
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob("store-*.sqlite3*"):
        old.unlink()
    building = cache / "building.sqlite3"
    for leftover in cache.glob("building.sqlite3*"):
        leftover.unlink()
    say(f"building {CALLS:,} calls and {DNC_NUMBERS:,} do-not-call numbers into {target}")
    peer = Peer()
    peer.start()
    try:
        await seed(building, workdir, peer)
    finally:
        peer.stop()
    started = time.monotonic()
    await asyncio.to_thread(bulk_copy, building)
    shutil.move(building, target)
    say(f"built in {time.monotonic() - started:.0f} s: {target.stat().st_size / 2**30:.1f} GiB")
    return target
