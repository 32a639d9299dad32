"""Retention: once an hour (and at start) the daemon deletes what is older
than ``[retention]`` says: ended calls with their timelines and deliveries,
webhook deliveries no longer pending, and recording files; and it applies the
whisper cache's bounds (``whisper.cache_max_age_days``). A call in progress
or scheduled, a delivery still pending and the recording of a call not yet
ended are never deleted. Each run logs one ``retention.pruned`` line and
counts into ``callconnect_pruned_total{kind}``."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Collection
from pathlib import Path

import structlog

from controller.config import RetentionConfig
from controller.daemon.metrics import PRUNED_KINDS, Metrics
from controller.store import Store, StoreError
from controller.tts import WhisperRenderer

log = structlog.get_logger(__name__)

PRUNE_EVERY_SECONDS = 3600.0
DAY_SECONDS = 86400.0


def prune_recordings(folder: Path, before: float, keep: Collection[str]) -> int:
    """Delete the recordings (``CALL_ID.wav``) in ``folder`` last changed
    before ``before``, but those of the calls in ``keep``; how many."""
    deleted = 0
    try:
        with os.scandir(folder) as entries:
            old = [Path(entry.path) for entry in entries
                   if entry.name.endswith(".wav") and not entry.name.startswith(".")
                   and entry.is_file(follow_symlinks=False)
                   and entry.stat(follow_symlinks=False).st_mtime < before]
    except FileNotFoundError:
        return 0  # no recording made yet
    except OSError as exc:
        log.warning("retention.recordings_unreadable", folder=str(folder), error=str(exc))
        return 0
    for path in old:
        if path.stem in keep:
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("retention.recording_not_deleted", file=path.name, error=str(exc))
            continue
        deleted += 1
    return deleted


class Retention:
    """``live_calls``: the ids of the calls this daemon is running now."""

    def __init__(self, settings: RetentionConfig, recording_dir: Path, store: Store,
                 renderer: WhisperRenderer, metrics: Metrics,
                 live_calls: Callable[[], Collection[str]]) -> None:
        self.settings = settings
        self.recording_dir = recording_dir
        self.store = store
        self.renderer = renderer
        self.metrics = metrics
        self.live_calls = live_calls

    async def run(self) -> None:
        while True:
            try:
                await self.prune(time.time())
            except Exception as exc:  # a bug: logged, and the next run tries again
                log.error("retention.failed", error=repr(exc), exc_info=exc)
            await asyncio.sleep(PRUNE_EVERY_SECONDS)

    async def prune(self, now: float) -> dict[str, int]:
        """One run at time ``now``: how many of each kind were deleted."""
        settings = self.settings
        pruned = dict.fromkeys(PRUNED_KINDS, 0)
        try:
            if settings.calls_days:
                pruned["calls"] = await self.store.prune_calls(now - settings.calls_days * DAY_SECONDS)
            if settings.deliveries_days:
                pruned["deliveries"] = await self.store.prune_deliveries(
                    now - settings.deliveries_days * DAY_SECONDS)
            if settings.recordings_days:
                # Calls a previous run left open count too: they may not be picked up yet.
                keep = {call.call_id for call in await self.store.open_calls()}
                keep.update(self.live_calls())
                pruned["recordings"] = await asyncio.to_thread(
                    prune_recordings, self.recording_dir,
                    now - settings.recordings_days * DAY_SECONDS, keep)
        except StoreError as exc:  # the store is down: the next run tries again
            log.warning("retention.store_failed", error=exc.message)
        pruned["whispers"] = len(await self.renderer.prune())
        for kind, count in pruned.items():
            self.metrics.pruned.labels(kind).inc(count)
        log.info("retention.pruned", **pruned)
        return pruned
