"""The daemon's retention run on a real SQLite store and real files, their
ages set through the store's timestamps and the files' mtimes: what is old
goes, what is new or still in use stays, and the run is counted and logged."""

from __future__ import annotations

import os
import time
from pathlib import Path

import structlog

from controller.config import RetentionConfig
from controller.daemon.metrics import Metrics
from controller.daemon.retention import DAY_SECONDS, Retention
from controller.store import DeliveryState
from controller.store.sqlite import SqliteStore
from controller.tts import WhisperRenderer
from tests.unit.store.builders import make_call, make_delivery


def aged(path: Path, days: float, now: float) -> Path:
    path.write_bytes(b"RIFF" + b"\0" * 40)
    at = now - days * DAY_SECONDS
    os.utime(path, (at, at))
    return path


def retention(tmp_path: Path, store: SqliteStore, settings: RetentionConfig, metrics: Metrics,
              live: tuple[str, ...] = ()) -> Retention:
    renderer = WhisperRenderer(tmp_path / "whispers", cache_max_age_days=30.0)
    return Retention(settings, tmp_path / "recordings", store, renderer, metrics, lambda: live)


async def test_a_run_deletes_what_is_old_and_keeps_what_is_new_or_in_use(
        tmp_path: Path, store: SqliteStore) -> None:
    now = time.time()
    days = DAY_SECONDS
    for call in (make_call("old-ended", now - 40 * days, state="ended", status="completed"),
                 make_call("new-ended", now - 1 * days, state="ended", status="completed"),
                 make_call("old-open", now - 40 * days, state="bridged")):
        await store.create_call(call)
    old_delivered = make_delivery("evt_old", "new-ended", created_at=now - 20 * days)
    old_delivered.state = DeliveryState.DELIVERED
    pending = make_delivery("evt_pending", "new-ended", created_at=now - 20 * days)
    await store.save_call(make_call("new-ended", now - days, state="ended", status="completed"),
                          [], [old_delivered, pending])
    recordings = tmp_path / "recordings"
    whispers = tmp_path / "whispers"
    recordings.mkdir()
    whispers.mkdir()
    gone = [aged(recordings / "old-ended.wav", 100, now), aged(whispers / "old.wav", 40, now)]
    kept = [aged(recordings / "new-ended.wav", 5, now),
            aged(recordings / "old-open.wav", 100, now),  # a call a previous run left open
            aged(recordings / "live.wav", 100, now),  # a call running now
            aged(recordings / "notes.txt", 100, now),  # not a recording
            aged(whispers / "recent.wav", 3, now)]
    metrics = Metrics("asterisk")
    settings = RetentionConfig(calls_days=30, deliveries_days=10, recordings_days=90)

    with structlog.testing.capture_logs() as logs:
        pruned = await retention(tmp_path, store, settings, metrics, ("live",)).prune(now)

    assert pruned == {"calls": 1, "deliveries": 1, "recordings": 1, "whispers": 1}
    assert [p for p in gone if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []
    assert await store.get_call("old-ended") is None
    assert await store.get_call("new-ended") is not None
    assert await store.get_call("old-open") is not None
    assert [d.event_id for d in await store.deliveries("new-ended")] == ["evt_pending"]
    [line] = [entry for entry in logs if entry["event"] == "retention.pruned"]
    assert {kind: line[kind] for kind in pruned} == pruned
    text = metrics.render().decode()
    for kind, count in pruned.items():
        assert f'callconnect_pruned_total{{kind="{kind}"}} {float(count)}' in text


async def test_by_default_calls_stay_and_a_run_with_nothing_old_deletes_nothing(
        tmp_path: Path, store: SqliteStore) -> None:
    now = time.time()
    await store.create_call(make_call("ancient", now - 3650 * DAY_SECONDS, state="ended",
                                      status="completed"))
    (tmp_path / "recordings").mkdir()
    recent = aged(tmp_path / "recordings" / "ancient.wav", 1, now)
    metrics = Metrics("asterisk")

    pruned = await retention(tmp_path, store, RetentionConfig(), metrics).prune(now)

    assert pruned == {"calls": 0, "deliveries": 0, "recordings": 0, "whispers": 0}
    assert await store.get_call("ancient") is not None
    assert recent.exists()
    assert 'callconnect_pruned_total{kind="calls"} 0.0' in metrics.render().decode()


async def test_zero_days_keeps_recordings_for_good(tmp_path: Path, store: SqliteStore) -> None:
    now = time.time()
    (tmp_path / "recordings").mkdir()
    ancient = aged(tmp_path / "recordings" / "gone-call.wav", 3650, now)

    pruned = await retention(tmp_path, store, RetentionConfig(recordings_days=0),
                             Metrics("asterisk")).prune(now)

    assert pruned["recordings"] == 0 and ancient.exists()
