"""The Event Socket byte stream to frames and events: pure, no I/O.

* :class:`EslFramer` cuts the byte stream from mod_event_socket into frames: a
  header block ended by a blank line, then exactly ``Content-Length`` bytes of
  body. Frames may arrive split across reads or several to a read. A frame that
  cannot be read (a header line without ``:``, a bad ``Content-Length``, no
  ``Content-Type``) is logged and skipped, never fatal.
* :func:`decode_event` turns an event frame into its headers:
  ``text/event-plain`` (one ``Name: value`` line per header, values
  URL-encoded, each line decoded on its own) or ``text/event-json``. An event's
  own body (``BACKGROUND_JOB``'s result) is kept under ``_body``.
* :class:`Reply` reads a command's answer; the rest read API answers
  (``uuid_dump``, ``show channels``).

greenswitch's own parser is not used for the same reasons ``link.py`` replaces
its reader: it URL-decodes an event's whole text before splitting it into
lines, glues an event's body onto its ``Content-Length`` header, and raises
(killing its reader) on a frame without ``Content-Type``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import structlog

log = structlog.get_logger(__name__)

# mod_event_socket reads at most this much in one packet (read_packet max_len).
MAX_BODY = 10 * 1024 * 1024
MAX_HEADER_BLOCK = 64 * 1024

BODY_KEY = "_body"

# ---------------------------------------------------------------- framing

@dataclass(frozen=True)
class Frame:
    headers: Mapping[str, str]
    body: str = ""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


class EslFramer:
    """Bytes in, frames out. Keeps what it has not understood yet."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiting: tuple[dict[str, str], int] | None = None  # headers, body length
        self.skipped = 0  # malformed frames seen (for tests and logs)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while True:
            if self._waiting is not None:
                headers, length = self._waiting
                if len(self._buffer) < length:
                    break
                body = bytes(self._buffer[:length])
                del self._buffer[:length]
                self._waiting = None
                self._emit(frames, headers, body)
                continue
            # Stray line ends between frames are skipped, as FreeSWITCH does.
            start = 0
            while start < len(self._buffer) and self._buffer[start] in b"\r\n":
                start += 1
            if start:
                del self._buffer[:start]
            end = _blank_line(self._buffer)
            if end is None:
                if len(self._buffer) > MAX_HEADER_BLOCK:
                    self._skip("header block too long", bytes(self._buffer[:80]))
                    self._buffer.clear()
                break
            block, body_start = end
            text = bytes(self._buffer[:block]).decode("utf-8", errors="replace")
            del self._buffer[:body_start]
            parsed = self._parse_block(text)
            if parsed is None:
                continue
            headers, length = parsed
            if length:
                self._waiting = (headers, length)
            else:
                self._emit(frames, headers, b"")
        return frames

    def _parse_block(self, text: str) -> tuple[dict[str, str], int] | None:
        headers: dict[str, str] = {}
        for line in text.split("\n"):
            line = line.rstrip("\r")
            name, colon, value = line.partition(":")
            if not colon or not name.strip():
                self._skip("header line without a name", line)
                return None
            headers[name.strip()] = value.lstrip(" ")
        raw_length = headers.get("Content-Length", "0")
        try:
            length = int(raw_length)
        except ValueError:
            self._skip("Content-Length is not a number", raw_length)
            return None
        if not 0 <= length <= MAX_BODY:
            self._skip("Content-Length out of range", raw_length)
            return None
        return headers, length

    def _emit(self, frames: list[Frame], headers: dict[str, str], body: bytes) -> None:
        if "Content-Type" not in headers:
            self._skip("frame without Content-Type", repr(headers)[:200])
            return
        frames.append(Frame(headers, body.decode("utf-8", errors="replace")))

    def _skip(self, why: str, sample: str | bytes) -> None:
        self.skipped += 1
        log.warning("esl.frame.malformed", reason=why, sample=str(sample)[:120])


def _blank_line(buffer: bytearray) -> tuple[int, int] | None:
    """(end of the header text, start of the body) at the first empty line."""
    pos = 0
    while True:
        newline = buffer.find(b"\n", pos)
        if newline < 0:
            return None
        if newline == pos or (newline == pos + 1 and buffer[pos] == 0x0D):
            return max(pos - 1, 0), newline + 1
        pos = newline + 1


# ---------------------------------------------------------------- event decoding

def decode_event(frame: Frame) -> dict[str, str] | None:
    """An event frame's headers (values decoded); None for anything else."""
    if frame.content_type == "text/event-plain":
        event = parse_plain_event(frame.body)
    elif frame.content_type == "text/event-json":
        event = parse_json_event(frame.body)
    else:
        return None
    if event is None or not event.get("Event-Name"):
        log.warning("esl.event.malformed", content_type=frame.content_type,
                    sample=frame.body[:120])
        return None
    return event


def parse_plain_event(text: str) -> dict[str, str] | None:
    """switch_event_serialize(): ``Name: url-encoded value`` lines; if the event
    has a body, a ``Content-Length`` line, a blank line, then the body."""
    head, _, rest = text.partition("\n\n")
    event: dict[str, str] = {}
    bad = 0
    for line in head.split("\n"):
        line = line.rstrip("\r")
        if not line:
            continue
        name, colon, value = line.partition(": ")
        if not colon:
            bad += 1
            continue
        event[name] = unquote(value)
    if bad:
        log.warning("esl.event.bad_lines", count=bad, event_name=event.get("Event-Name"))
    if not event:
        return None
    if "Content-Length" in event:
        try:
            length = int(event.pop("Content-Length"))
        except ValueError:
            length = len(rest)
        event[BODY_KEY] = rest.encode()[:length].decode("utf-8", errors="replace")
    return event


def parse_json_event(text: str) -> dict[str, str] | None:
    """switch_event_serialize_json(): one object; multi-valued headers are
    arrays; the body is ``_body``."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    event: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, list):
            event[str(key)] = ",".join(str(v) for v in value)
        elif isinstance(value, str):
            event[str(key)] = value
        else:
            event[str(key)] = json.dumps(value)
    return event


def parse_dump(text: str) -> dict[str, str] | None:
    """``uuid_dump <uuid> json``: the channel's headers and variables, or None
    if FreeSWITCH has no such channel (``-ERR No such channel!``)."""
    if not text.lstrip().startswith("{"):
        return None
    return parse_json_event(text)


def channel_rows(text: str) -> list[dict[str, str]]:
    """``show channels as json``: ``{"row_count": N, "rows": [{"uuid": ...,
    "name": ..., "presence_id": ..., ...}, ...]}`` (no ``rows`` when there
    are none); values as strings."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    rows = data.get("rows") or []
    return [{str(k): "" if v is None else str(v) for k, v in row.items()}
            for row in rows if isinstance(row, dict)]


def channel_names(text: str) -> list[str]:
    """Channel names from ``show channels as json``."""
    return [row.get("name", "") for row in channel_rows(text)]



@dataclass(frozen=True)
class Reply:
    """A command/reply (the verdict in Reply-Text) or an api/response (in the body)."""

    headers: dict[str, str]
    body: str

    @property
    def text(self) -> str:
        if self.headers.get("Content-Type") == "api/response":
            return self.body.strip()
        return self.headers.get("Reply-Text", "").strip()

    @property
    def ok(self) -> bool:
        return self.text.startswith("+OK")
