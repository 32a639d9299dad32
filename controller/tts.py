"""Whisper text to speech: espeak-ng, converted by sox to what Asterisk plays
natively (8 kHz mono 16-bit WAV), cached by a hash of everything that shapes
the sound, so a repeated whisper costs nothing.

Files are written under a temporary name and renamed into place: a crash
never leaves half a file that a later call would play. They are 0640 in a
0750 folder: the switch reads them through its group, nobody else does.

The cache is bounded: files unused for ``cache_max_age_days`` are deleted, and
while it is over ``cache_max_mb`` the least recently used go first. A file used
within :data:`IN_USE_SECONDS` (longer than any call can last) is never deleted:
a live call may still play it. Each use refreshes a file's mtime, so the mtime
is its last use, to within :data:`TOUCH_EVERY_SECONDS`: a whisper used again
within that time is taken from memory, without touching the disk (a file
deleted by hand is rendered again at most that long after). At most
``max_concurrent_renders`` renders run at once; a render that waits
``render_wait_seconds`` for a place is refused with
:class:`~controller.errors.WhisperBusy`.

Texts to speak (whispers, fallback and queue messages) are plain sentences:
:func:`check_text` refuses control characters, dialplan-looking syntax,
backslashes and markup before anything is rendered or dialed. The text goes
to espeak-ng on stdin and only a file path reaches the switch, so commas,
quotes and other punctuation are spoken as written.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import time
import unicodedata
import uuid
import wave
from dataclasses import dataclass
from pathlib import Path

import structlog

from controller.errors import InvalidField, WhisperBusy, WhisperError

log = structlog.get_logger(__name__)

SAMPLE_RATE = 8000
RENDER_TIMEOUT = 30.0
FILE_MODE = 0o640  # the switch reads whisper files through its group
FOLDER_MODE = 0o750
# A file used this recently may still be played by a live call: longer than the
# longest call (a 24 h time limit after 50 attempts of 10 min ringing, plus
# waits in a queue); tests/unit/test_tts.py holds it to the request limits.
IN_USE_SECONDS = 2 * 24 * 3600.0
# Pruning on write runs at most this often; start-up prunes too.
PRUNE_EVERY_SECONDS = 600.0
# A cached file's mtime (its last use) is moved at most this often: the same
# whisper on every call then costs no file system calls. Far below
# IN_USE_SECONDS, so a file in use is never pruned.
TOUCH_EVERY_SECONDS = 60.0
# The most whispers remembered as recently used; past it the memory starts over.
MAX_REMEMBERED = 512
# The most characters a text to speak may have; the API's own limit on
# whisper and message fields (controller.calls.request) is the same.
MAX_TEXT_CHARS = 1000
# Control, format (bidi overrides, zero-width), surrogate, line and paragraph
# separator characters: nobody speaks them, and they could hide text.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# SSML/HTML-looking tags and character entities.
_MARKUP = re.compile(r"</?[A-Za-z!?][^<>]*>|&(?:#[0-9]+|#[xX][0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);")


def control_character(text: str) -> str | None:
    """The first character of ``text`` in a refused category, if any."""
    return next((c for c in text if unicodedata.category(c) in _REFUSED_CATEGORIES), None)


def check_text(text: str, field: str) -> str:
    """The text as it is spoken (spaces folded), if it is plain text of at
    most MAX_TEXT_CHARS; else InvalidField naming ``field`` and the rule."""
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidField(f"{field} has {len(text)} characters; the limit is {MAX_TEXT_CHARS}",
                           field=field)
    char = control_character(text)
    if char is not None:
        raise InvalidField(
            f"{field} contains the control character U+{ord(char):04X}: line breaks, tabs "
            "and other control or formatting characters are refused", field=field)
    if "${" in text or "$[" in text:
        raise InvalidField(f"{field} contains '${{' or '$[': dialplan expressions are refused",
                           field=field)
    if "\\" in text:
        raise InvalidField(f"{field} contains a backslash: backslashes are refused", field=field)
    markup = _MARKUP.search(text)
    if markup is not None:
        raise InvalidField(f"{field} looks like markup ({markup.group()[:40]!r}): SSML or HTML "
                           "tags and &entities; are refused; write plain text", field=field)
    spoken = " ".join(text.split())
    if not spoken:
        raise InvalidField(f"{field} is empty", field=field)
    return spoken


@dataclass(frozen=True)
class RenderedAudio:
    path: Path
    seconds: float
    cached: bool


class WhisperRenderer:
    def __init__(self, directory: Path, voice: str = "en", rate: int = 160,
                 max_seconds: float = 30.0, *, max_concurrent_renders: int = 2,
                 render_wait_seconds: float = 10.0, cache_max_age_days: float = 30.0,
                 cache_max_mb: float = 500.0) -> None:
        self.directory = directory
        self.voice = voice
        self.rate = rate
        self.max_seconds = max_seconds
        self.render_wait_seconds = render_wait_seconds
        self.cache_max_age_seconds = cache_max_age_days * 86400
        self.cache_max_bytes = int(cache_max_mb * 1024 * 1024)
        self._engine_version: str | None = None
        self._renders = asyncio.Semaphore(max_concurrent_renders)
        self._max_renders = max_concurrent_renders
        self._pruned_at: float | None = None
        # (spoken text, voice) -> the cached file and when its mtime was last moved.
        self._recent: dict[tuple[str, str], tuple[RenderedAudio, float]] = {}

    @staticmethod
    def clean(text: str) -> str:
        """The text as it is spoken: spaces folded."""
        return " ".join(text.split())

    async def render(self, text: str, field: str = "whisper",
                     voice: str | None = None) -> RenderedAudio:
        """The text's audio, in ``voice`` (an espeak-ng voice or language;
        default whisper.voice); InvalidField naming ``field`` if check_text
        refuses the text or it takes longer than max_seconds to speak;
        WhisperBusy if no render place frees up within render_wait_seconds."""
        spoken = check_text(text, field)
        voice = voice or self.voice
        recent = self._recent.get((spoken, voice))
        if recent is not None and time.monotonic() - recent[1] < TOUCH_EVERY_SECONDS:
            return recent[0]
        version = await self.engine_version()
        key = json.dumps([spoken, voice, self.rate, version, SAMPLE_RATE])
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        path = self.directory / f"{digest}.wav"
        cached = _use(path)
        if cached is not None:
            return self._remember(spoken, voice, cached)
        try:
            async with asyncio.timeout(self.render_wait_seconds):
                await self._renders.acquire()
        except TimeoutError as exc:
            raise WhisperBusy(
                f"{self._max_renders} whisper renders are already running and none finished "
                f"within {self.render_wait_seconds:g} s (whisper.max_concurrent_renders); "
                "retry shortly", retry_after=self.render_wait_seconds) from exc
        try:
            # Another call may have rendered the same text while this one waited.
            cached = _use(path)
            if cached is not None:
                return cached
            seconds = await self._render_to(path, digest, spoken, field, voice)
        finally:
            self._renders.release()
        log.info("whisper.rendered", file=path.name, seconds=round(seconds, 2))
        await self._prune_if_due()
        self._remember(spoken, voice, RenderedAudio(path, seconds, cached=True))
        return RenderedAudio(path, seconds, cached=False)

    def _remember(self, spoken: str, voice: str, audio: RenderedAudio) -> RenderedAudio:
        if len(self._recent) >= MAX_REMEMBERED:
            self._recent.clear()
        self._recent[(spoken, voice)] = (audio, time.monotonic())
        return audio

    async def _render_to(self, path: Path, digest: str, spoken: str, field: str,
                         voice: str) -> float:
        self.directory.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        # Unique names: concurrent calls may render the same text at once.
        unique = uuid.uuid4().hex
        raw = path.with_name(f".{digest}.{unique}.raw.wav")
        converted = path.with_name(f".{digest}.{unique}.wav")
        try:
            await _run(["espeak-ng", "-v", voice, "-s", str(self.rate), "-w", str(raw),
                        "--stdin"], stdin=spoken.encode())
            await _run(["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
                        str(converted)])
            seconds = _seconds(converted)
            if seconds > self.max_seconds:
                raise InvalidField(
                    f"{field} takes {seconds:.1f} s to speak; the limit is "
                    f"{self.max_seconds:g} s (whisper.max_seconds): shorten the text", field=field,
                )
            converted.chmod(FILE_MODE)
            os.replace(converted, path)
        finally:
            raw.unlink(missing_ok=True)
            converted.unlink(missing_ok=True)
        return seconds

    async def prune(self) -> list[str]:
        """Apply the cache's age and size bounds now (at start-up, and by the
        daemon's retention); the names deleted."""
        self._pruned_at = time.monotonic()
        return await asyncio.to_thread(self.prune_now, time.time())

    async def _prune_if_due(self) -> None:
        if self._pruned_at is None or time.monotonic() - self._pruned_at >= PRUNE_EVERY_SECONDS:
            await self.prune()

    def prune_now(self, now: float) -> list[str]:
        """Delete what is over the bounds at time ``now``; the names deleted.
        Files used within IN_USE_SECONDS stay, whatever the bounds say."""
        files: list[tuple[float, int, Path]] = []
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if entry.name.endswith(".wav") and not entry.name.startswith("."):
                        info = entry.stat(follow_symlinks=False)
                        files.append((info.st_mtime, info.st_size, Path(entry.path)))
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("whisper.cache_unreadable", folder=str(self.directory), error=str(exc))
            return []
        files.sort()  # least recently used first
        total = sum(size for _, size, _ in files)
        deleted: list[str] = []
        for used_at, size, path in files:
            idle = now - used_at
            if idle < IN_USE_SECONDS:
                break  # this one and every later one may still be playing
            if idle < self.cache_max_age_seconds and total <= self.cache_max_bytes:
                break
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("whisper.cache_not_pruned", file=path.name, error=str(exc))
                continue
            total -= size
            deleted.append(path.name)
        if deleted:
            log.info("whisper.cache_pruned", deleted=len(deleted), kept_bytes=total)
        if total > self.cache_max_bytes:
            log.warning("whisper.cache_over_size", bytes=total, limit=self.cache_max_bytes,
                        reason=f"files used in the last {IN_USE_SECONDS / 3600:g} h are kept")
        return deleted

    async def engine_version(self) -> str:
        if self._engine_version is None:
            for tool in ("espeak-ng", "sox"):
                if shutil.which(tool) is None:
                    raise WhisperError(
                        f"{tool} is not installed; install it (apt-get install {tool}) "
                        "or run make install", tool=tool)
            out = await _run(["espeak-ng", "--version"])
            self._engine_version = out.decode(errors="replace").strip()
        return self._engine_version


async def _run(argv: list[str], stdin: bytes | None = None) -> bytes:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), RENDER_TIMEOUT)
    except TimeoutError as exc:
        process.kill()
        await process.wait()
        raise WhisperError(f"{argv[0]} took over {RENDER_TIMEOUT:g} s", tool=argv[0]) from exc
    if process.returncode != 0:
        raise WhisperError(
            f"{argv[0]} failed (exit {process.returncode}): "
            f"{err.decode(errors='replace').strip()[:300]}", tool=argv[0])
    return out


def _use(path: Path) -> RenderedAudio | None:
    """The cached file, its mtime moved to now (its last use), if it exists."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return None
    return RenderedAudio(path, _seconds(path), cached=True)


def _seconds(path: Path) -> float:
    with wave.open(str(path)) as audio:
        frames: int = audio.getnframes()
        rate: int = audio.getframerate()
        return frames / rate
