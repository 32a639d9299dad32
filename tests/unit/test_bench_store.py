"""The store bench (bench/store.py): how many calls it places, how many of
them it expects the big store to refuse as do-not-call, and how it takes
them out of the cached store again, leaving the store's own rows as built."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from bench.store import CALLS, OUT, arguments, forget_placed, on_dnc
from bench.store_build import placed_number
from controller.store import TimelineEntry
from controller.store.sqlite import SqliteStore
from tests.unit.store.builders import make_call, make_delivery

LEG_A = "+27115550101"


def test_by_default_it_places_its_calls_and_writes_the_documented_figures() -> None:
    args = arguments([])
    assert (args.calls, args.out) == (CALLS, OUT)


def test_a_quick_run_places_fewer_calls_and_writes_elsewhere(tmp_path: Path) -> None:
    args = arguments(["--calls", "45", "--out", str(tmp_path / "quick.json")])
    assert (args.calls, args.out) == (45, tmp_path / "quick.json")


@pytest.mark.parametrize("calls", ["0", "-3", "many", "90001"])
def test_a_count_of_calls_out_of_the_numbers_range_is_refused(
        calls: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        arguments(["--calls", calls])
    assert "--calls" in capsys.readouterr().err


@pytest.mark.parametrize(("calls", "refused"), [(600, 60), (45, 5), (1, 1), (10, 1), (11, 2)])
def test_every_tenth_call_from_the_first_is_on_the_do_not_call_list(calls: int,
                                                                     refused: int) -> None:
    assert sum(map(on_dnc, range(calls))) == refused


async def test_the_placed_calls_go_with_what_they_left_and_the_stores_own_rows_stay(
        tmp_path: Path) -> None:
    path = tmp_path / "big.sqlite3"
    store = SqliteStore(path)
    await store.open()
    seed_b = "+27115550202"  # the store's own call's leg B: placed_number(55502) too
    try:
        for call_id, leg_b in (("seed", seed_b), ("placed-0", placed_number(0)),
                               ("placed-1", placed_number(1)), ("earlier-run", placed_number(2))):
            await store.create_call(make_call(call_id, 1000.0, state="ended", status="completed"))
            await store.save_call(make_call(call_id, 1000.0, state="ended", status="completed"),
                                  [TimelineEntry(call_id, 1001.0, "transition", {"to": "ended"})],
                                  [make_delivery(f"evt-{call_id}", call_id)])
            await store.record_attempts(call_id, [LEG_A, leg_b], 1000.0)
            await store.agent_call_started(leg_b, call_id, 1000.0)
            await store.agent_call_ended(leg_b, call_id, 1001.0)
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as db, db:  # an earlier run took out only its call
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("DELETE FROM calls WHERE call_id = 'earlier-run'")

    forget_placed(path, ["placed-0", "placed-1"])

    with closing(sqlite3.connect(path)) as db:
        left = {table: db.execute(f"SELECT {column} FROM {table}").fetchall() for table, column in (
            ("calls", "call_id"), ("timeline", "call_id"), ("deliveries", "call_id"),
            ("number_attempts", "call_id"), ("agent_calls", "call_id"), ("agents", "target"))}
    assert left == {"calls": [("seed",)], "timeline": [("seed",)], "deliveries": [("seed",)],
                    "number_attempts": [("seed",), ("seed",)], "agent_calls": [("seed",)],
                    "agents": [(seed_b,)]}
