"""Whisper text to speech: espeak-ng, converted by sox to what Asterisk plays
natively (8 kHz mono 16-bit WAV), cached by a hash of everything that shapes
the sound, so a repeated whisper costs nothing.

Files are written under a temporary name and renamed into place: a crash
never leaves half a file that a later call would play.

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
import unicodedata
import uuid
import wave
from dataclasses import dataclass
from pathlib import Path

import structlog

from controller.errors import InvalidField, WhisperError

log = structlog.get_logger(__name__)

SAMPLE_RATE = 8000
RENDER_TIMEOUT = 30.0
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
                 max_seconds: float = 30.0) -> None:
        self.directory = directory
        self.voice = voice
        self.rate = rate
        self.max_seconds = max_seconds
        self._engine_version: str | None = None

    @staticmethod
    def clean(text: str) -> str:
        """The text as it is spoken: spaces folded."""
        return " ".join(text.split())

    async def render(self, text: str, field: str = "whisper") -> RenderedAudio:
        """The text's audio; InvalidField naming ``field`` if check_text refuses
        the text or it takes longer than max_seconds to speak."""
        spoken = check_text(text, field)
        version = await self.engine_version()
        key = json.dumps([spoken, self.voice, self.rate, version, SAMPLE_RATE])
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        path = self.directory / f"{digest}.wav"
        if path.exists():
            return RenderedAudio(path, _seconds(path), cached=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        # Unique names: concurrent calls may render the same text at once.
        unique = uuid.uuid4().hex
        raw = path.with_name(f".{digest}.{unique}.raw.wav")
        converted = path.with_name(f".{digest}.{unique}.wav")
        try:
            await _run(["espeak-ng", "-v", self.voice, "-s", str(self.rate), "-w", str(raw),
                        "--stdin"], stdin=spoken.encode())
            await _run(["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
                        str(converted)])
            seconds = _seconds(converted)
            if seconds > self.max_seconds:
                raise InvalidField(
                    f"{field} takes {seconds:.1f} s to speak; the limit is "
                    f"{self.max_seconds:g} s (whisper.max_seconds): shorten the text", field=field,
                )
            converted.chmod(0o644)
            os.replace(converted, path)
        finally:
            raw.unlink(missing_ok=True)
            converted.unlink(missing_ok=True)
        log.info("whisper.rendered", file=path.name, seconds=round(seconds, 2))
        return RenderedAudio(path, seconds, cached=False)

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


def _seconds(path: Path) -> float:
    with wave.open(str(path)) as audio:
        frames: int = audio.getnframes()
        rate: int = audio.getframerate()
        return frames / rate
