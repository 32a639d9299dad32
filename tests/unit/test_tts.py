"""Whisper rendering with the real espeak-ng and sox: the format Asterisk
wants, and a cache keyed by everything that shapes the sound."""

from __future__ import annotations

import asyncio
import os
import stat
import time
import wave
from pathlib import Path

import pytest

from controller.calls.request import MAX_ATTEMPTS, MAX_RING_TIMEOUT, MAX_TIME_LIMIT
from controller.errors import InvalidField, WhisperBusy
from controller.tts import IN_USE_SECONDS, WhisperRenderer

TEXT = "Connecting you to John Smith from the website form"


def fmt(path: Path) -> tuple[int, int, int]:
    with wave.open(str(path)) as audio:
        return audio.getframerate(), audio.getnchannels(), audio.getsampwidth()


async def test_renders_8khz_mono_16bit_wav_of_the_spoken_length(tmp_path: Path) -> None:
    audio = await WhisperRenderer(tmp_path).render(TEXT)
    assert fmt(audio.path) == (8000, 1, 2)
    assert 2.0 < audio.seconds < 5.0
    assert not audio.cached
    assert [p.name for p in tmp_path.iterdir()] == [audio.path.name], "no temporary file is left"


async def test_same_text_is_served_from_the_cache(tmp_path: Path) -> None:
    renderer = WhisperRenderer(tmp_path)
    first = await renderer.render(TEXT)
    inode = first.path.stat().st_ino
    os.utime(first.path, (1_000_000, 1_000_000))
    # Another daemon (or this one after a restart) finds it on disk.
    again = await WhisperRenderer(tmp_path).render(
        "  Connecting you to John Smith   from the website form ")
    assert again.cached and again.path == first.path
    assert again.path.stat().st_ino == inode, "not rendered again"
    assert again.path.stat().st_mtime > 1_000_000, "the mtime says when it was last used"


async def test_a_whisper_used_again_within_a_minute_costs_no_disk_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renderer = WhisperRenderer(tmp_path)
    first = await renderer.render(TEXT)
    os.utime(first.path, (1_000_000, 1_000_000))
    again = await renderer.render(TEXT)
    assert again.cached and again.path == first.path and again.seconds == first.seconds
    assert first.path.stat().st_mtime == 1_000_000, "taken from memory: the file was not touched"
    monkeypatch.setattr("controller.tts.TOUCH_EVERY_SECONDS", 0.0)
    assert (await renderer.render(TEXT)).cached
    assert first.path.stat().st_mtime > 1_000_000, "past the minute, the use moves the mtime"


async def test_voice_rate_and_text_each_change_the_file(tmp_path: Path) -> None:
    base = await WhisperRenderer(tmp_path).render(TEXT)
    other_rate = await WhisperRenderer(tmp_path, rate=120).render(TEXT)
    other_voice = await WhisperRenderer(tmp_path, voice="en-us").render(TEXT)
    other_text = await WhisperRenderer(tmp_path).render(TEXT + " about pricing")
    paths = {base.path, other_rate.path, other_voice.path, other_text.path}
    assert len(paths) == 4
    assert other_rate.seconds > base.seconds, "slower speech lasts longer"


async def test_text_too_long_to_speak_in_the_limit_is_refused(tmp_path: Path) -> None:
    renderer = WhisperRenderer(tmp_path, max_seconds=2.0)
    with pytest.raises(InvalidField) as error:
        await renderer.render(TEXT)
    assert error.value.details["field"] == "whisper"
    assert list(tmp_path.iterdir()) == []


async def test_empty_whisper_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidField):
        await WhisperRenderer(tmp_path).render("   ")


async def test_concurrent_renders_of_the_same_text_all_succeed(tmp_path: Path) -> None:
    renderer = WhisperRenderer(tmp_path)
    results = await asyncio.gather(*(renderer.render(TEXT) for _ in range(6)))
    assert len({r.path for r in results}) == 1
    assert [p.name for p in tmp_path.iterdir()] == [results[0].path.name]


async def test_files_are_0640_in_a_0750_folder_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        audio = await WhisperRenderer(tmp_path / "whispers").render(TEXT)
    finally:
        os.umask(old)
    assert stat.S_IMODE(audio.path.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "whispers").stat().st_mode) == 0o750


def test_files_in_use_outlive_the_longest_call() -> None:
    assert IN_USE_SECONDS > MAX_TIME_LIMIT + MAX_ATTEMPTS * MAX_RING_TIMEOUT


def cache_file(folder: Path, name: str, size: int, used_at: float) -> Path:
    path = folder / f"{name}.wav"
    path.write_bytes(b"\0" * size)
    os.utime(path, (used_at, used_at))
    return path


def test_prune_deletes_files_unused_longer_than_the_max_age(tmp_path: Path) -> None:
    now = time.time()
    day = 86400.0
    renderer = WhisperRenderer(tmp_path, cache_max_age_days=10)
    old = cache_file(tmp_path, "old", 100, now - 11 * day)
    recent = cache_file(tmp_path, "recent", 100, now - 9 * day)
    assert renderer.prune_now(now) == [old.name]
    assert recent.exists()


def test_prune_over_the_size_cap_deletes_least_recently_used_but_never_files_in_use(
        tmp_path: Path) -> None:
    now = time.time()
    mb = 1024 * 1024
    renderer = WhisperRenderer(tmp_path, cache_max_mb=1, cache_max_age_days=365)
    oldest = cache_file(tmp_path, "oldest", mb, now - IN_USE_SECONDS - 300)
    older = cache_file(tmp_path, "older", mb, now - IN_USE_SECONDS - 200)
    in_use = [cache_file(tmp_path, f"live{i}", mb, now - IN_USE_SECONDS + 100) for i in range(2)]
    hidden = tmp_path / ".partial.wav"  # a render under way
    hidden.write_bytes(b"\0" * mb)
    os.utime(hidden, (0, 0))
    # 4 MiB against a 1 MiB cap: both idle files go, oldest first; the files
    # used within IN_USE_SECONDS stay although the cache is still over the cap.
    assert renderer.prune_now(now) == [oldest.name, older.name]
    assert all(path.exists() for path in in_use) and hidden.exists()


async def test_start_up_prune_applies_the_bounds(tmp_path: Path) -> None:
    stale = cache_file(tmp_path, "stale", 10, time.time() - 40 * 86400)
    await WhisperRenderer(tmp_path).prune()
    assert not stale.exists()


async def test_a_write_prunes_the_cache(tmp_path: Path) -> None:
    stale = cache_file(tmp_path, "stale", 10, time.time() - 40 * 86400)
    await WhisperRenderer(tmp_path).render(TEXT)
    assert not stale.exists()


async def test_renders_over_the_cap_wait_then_are_refused_with_a_clear_error(
        tmp_path: Path) -> None:
    renderer = WhisperRenderer(tmp_path, max_concurrent_renders=1, render_wait_seconds=0.2)
    await renderer._renders.acquire()  # a render holds the only place
    with pytest.raises(WhisperBusy) as error:
        await renderer.render(TEXT)
    assert error.value.error_id == "whisper-busy" and error.value.http_status == 503
    assert "whisper.max_concurrent_renders" in error.value.message
    assert list(tmp_path.iterdir()) == []
    renderer._renders.release()
    assert not (await renderer.render(TEXT)).cached


async def test_at_most_the_cap_of_renders_run_at_once(tmp_path: Path) -> None:
    renderer = WhisperRenderer(tmp_path, max_concurrent_renders=2, render_wait_seconds=60)
    running = peak = 0
    render_to = renderer._render_to

    async def counted(*args: object) -> float:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            return await render_to(*args)  # type: ignore[arg-type]
        finally:
            running -= 1

    renderer._render_to = counted  # type: ignore[method-assign]
    results = await asyncio.gather(*(renderer.render(f"{TEXT} {n}") for n in range(5)))
    assert len({r.path for r in results}) == 5
    assert peak == 2


async def test_the_controller_prunes_the_cache_at_start_up(tmp_path: Path) -> None:
    from controller.app import Controller
    from controller.config import Config
    from controller.errors import SwitchUnavailable
    from tests.unit.conftest import QuietListener

    config = Config()
    config.media.whisper_dir = str(tmp_path)
    config.asterisk.port, config.asterisk.connect_timeout = 9, 1.0  # nothing listens there
    stale = cache_file(tmp_path, "stale", 10, time.time() - 40 * 86400)
    with pytest.raises(SwitchUnavailable):
        await Controller(config, QuietListener()).start()  # type: ignore[arg-type]
    assert not stale.exists()
