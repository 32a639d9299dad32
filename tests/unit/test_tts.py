"""Whisper rendering with the real espeak-ng and sox: the format Asterisk
wants, and a cache keyed by everything that shapes the sound."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import pytest

from controller.errors import InvalidField
from controller.tts import WhisperRenderer

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
    mtime = first.path.stat().st_mtime_ns
    again = await renderer.render("  Connecting you to John Smith   from the website form ")
    assert again.cached and again.path == first.path
    assert again.path.stat().st_mtime_ns == mtime


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
