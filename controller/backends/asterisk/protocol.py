"""panoramisk's AMI protocol and Manager with less CPU per event, and a
malformed frame skipped instead of ending the connection.

AMI frames end at a blank line. :func:`read_frames` (pure: bytes in, messages
and the unfinished rest out) builds the same :class:`~panoramisk.message.Message`
panoramisk's ``Message.from_line`` would, with less work: one dict
comprehension over the header lines fills the Message's lower-cased store at
once, where panoramisk splits, then sets one header at a time through
``MutableMapping.update``. panoramisk's meaning is kept: a header given twice
is a list, the last line of a ``Response: Follows``/``Fail`` frame is its
``content``, ``Message.quoted_keys`` are unquoted, and a frame with neither
``Event`` nor ``Response`` is dropped. :class:`AmiManager` matches an event's
name against the registered patterns once per name. panoramisk's actions,
responses and connection handling are its own; its ``save_stream`` (a copy of
the raw stream, for debugging) is not offered.

A frame is skipped and logged when it is over :data:`MAX_FRAME` bytes, has
neither ``Event`` nor ``Response``, or gives one of the headers it is
dispatched by (:data:`DISPATCH_HEADERS`) twice: panoramisk would give those as
a list, the list would meet string methods or a dict lookup, the error would
escape ``data_received``, and asyncio would close the transport.
"""

from __future__ import annotations

import asyncio
from itertools import repeat
from typing import Any, NamedTuple
from urllib.parse import unquote

import structlog
from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

log = structlog.get_logger(__name__)

FRAME_END = b"\r\n\r\n"
EOL = "\r\n"
GREETING = b"Asterisk Call Manager/"
# Bounds what a frame that never ends can hold. Asterisk's largest answers to
# the backend's actions (a CoreShowChannel event, a DBGet) are a few KiB.
MAX_FRAME = 1 << 20  # bytes
DISPATCH_HEADERS = ("event", "response", "actionid", "commandid")  # lower-cased
_HAS_BODY = ("Response: Follows", "Response: Fail")  # as panoramisk's from_line
_NO_HEADER = ("", "")
# Event names whose matching patterns are remembered: AMI has about 200.
MAX_EVENT_NAMES = 1024


class AmiMessage(Message):  # type: ignore[misc]  # panoramisk has no type hints
    """A panoramisk Message whose ``get`` reads the store directly instead of
    through ``Mapping.get`` and ``__getitem__`` (the translator's lookups);
    still case-insensitive."""

    def get(self, key: str, default: Any = None) -> Any:
        item = self._store.get(key.lower())
        return default if item is None else item[1]


class Frames(NamedTuple):
    messages: list[AmiMessage]
    rest: bytes  # the unfinished frame, to be read again with what comes next
    skipping: bool  # in a frame over MAX_FRAME: the rest of it is skipped


def read_frames(data: bytes, encoding: str, skipping: bool = False) -> Frames:
    """The messages in ``data`` (the rest of the last read, then this read).
    ``skipping``: ``data`` starts inside an over-long frame, which is dropped
    up to its end."""
    frames = data.split(FRAME_END)
    rest = frames.pop()
    messages = []
    for frame in frames:
        if skipping:
            skipping = False
            continue
        if len(frame) > MAX_FRAME:
            log.warning("ami.frame.malformed", error=f"frame over {MAX_FRAME} bytes",
                        size=len(frame))
            continue
        message = parse_frame(frame.decode(encoding, "ignore"))
        if message is not None:
            messages.append(message)
    if len(rest) > MAX_FRAME:
        if not skipping:  # (logged once, when first found too long)
            log.warning("ami.frame.malformed", size=len(rest),
                        error=f"frame over {MAX_FRAME} bytes, skipped to its end")
        # Its last bytes may begin its end.
        return Frames(messages, rest[-(len(FRAME_END) - 1):], True)
    return Frames(messages, rest, skipping)


def parse_frame(text: str) -> AmiMessage | None:
    """One frame (without its blank line) as panoramisk's ``Message.from_line``
    reads it; None, logged, for a malformed frame, and for an empty one."""
    lines = text.strip().split(EOL)
    content = ""
    if lines[0].startswith(_HAS_BODY):
        content = lines.pop()
        while not content and lines:
            content = lines.pop()
    store = {name.lower(): (name, value)
             for name, colon, value in map(str.partition, lines, repeat(": ")) if colon}
    if len(store) == len(lines):  # each line a header, each header once: the usual frame
        typed = store.get("event", _NO_HEADER)[0] == "Event" \
            or store.get("response", _NO_HEADER)[0] == "Response"
        for key in Message.quoted_keys:
            item = store.get(key)
            if item is not None:
                store[key] = (item[0], unquote(item[1]).strip())
    else:  # a line that is no header, a header twice, or names that differ in case only
        headers = _headers(lines)
        typed = "Event" in headers or "Response" in headers
        store = {name.lower(): (name, value) for name, value in headers.items()}
        twice = [store[name][0] for name in DISPATCH_HEADERS
                 if name in store and isinstance(store[name][1], list)]
        if twice and typed:
            log.warning("ami.frame.malformed", error=f"header given twice: {', '.join(twice)}")
            return None
    if not typed:
        if lines != [""]:
            log.warning("ami.frame.malformed", error="neither Event nor Response",
                        size=len(text))
        return None
    store["content"] = ("content", content)  # as Message(headers, content=content)
    message: AmiMessage = AmiMessage.__new__(AmiMessage)
    message._store = store
    message.manager = None
    return message


def _headers(lines: list[str]) -> dict[str, Any]:
    """The headers as panoramisk's from_line gathers them (names in their own
    case): a header given more than once is the list of its values."""
    headers: dict[str, Any] = {}
    for line in lines:
        name, colon, value = line.partition(": ")
        if not colon:
            continue
        if name.lower() in Message.quoted_keys:
            value = unquote(value).strip()
        if name in headers:
            before = headers[name]
            headers[name] = [*before, value] if isinstance(before, list) else [before, value]
        else:
            headers[name] = value
    return headers


class AmiProtocol(AMIProtocol):  # type: ignore[misc]  # panoramisk has no type hints
    version: str | None  # from the greeting (panoramisk's)

    def connection_made(self, transport: asyncio.BaseTransport | None) -> None:
        super().connection_made(transport)
        self._pending = bytearray()  # a frame begun in an earlier read
        self._skipping = False

    def data_received(self, data: bytes) -> None:
        encoding = getattr(self, "encoding", "ascii")
        if self._pending:
            self._pending += data
            # Only the new bytes are searched, so a frame in many reads costs linear time.
            since = len(self._pending) - len(data) - (len(FRAME_END) - 1)
            if self._pending.find(FRAME_END, max(since, 0)) < 0 and len(self._pending) <= MAX_FRAME:
                return
            data = bytes(self._pending)
        if self.version is None and data.startswith(GREETING) and b"\r\n" in data:
            line = data.partition(b"\r\n")[0].decode(encoding, "ignore")
            self.version = line.partition("/")[2].strip()
            self.log.info("protocol version: '%s'", self.version)
        messages, rest, self._skipping = read_frames(data, encoding, self._skipping)
        self._pending = bytearray(rest)
        for message in messages:
            self.handle_message(message)

    def handle_message(self, message: Any) -> Any:
        store = message._store
        if "actionid" in store or "commandid" in store or "event" not in store:
            return super().handle_message(message)  # an answer to an action of ours
        # panoramisk's own handling of an event that answers no action.
        if store["event"][1].lower() == "shutdown":
            self.connection_lost(message)
        return self.factory.dispatch(message)


class AmiManager(Manager):  # type: ignore[misc]  # panoramisk has no type hints
    """panoramisk's Manager, matching an event name against the registered
    patterns (``register_event``, wildcards and all) once per name rather than
    once per event."""

    def __init__(self, **config: Any) -> None:
        self._matching: dict[str, list[str]] = {}
        self._matched_with = 0  # how many patterns there were: one more clears _matching
        self._running: set[asyncio.Future[Any]] = set()
        super().__init__(**config)

    def dispatch(self, event: Any) -> list[str]:
        event.manager = self
        name = event.get("Event", "")
        if self._matched_with != len(self.patterns):
            self._matching.clear()
            self._matched_with = len(self.patterns)
        matches = self._matching.get(name)
        if matches is None:
            matches = [pattern for pattern, regexp in self.patterns if regexp.match(name)]
            if len(self._matching) < MAX_EVENT_NAMES:
                self._matching[name] = matches
        for pattern in matches:
            for callback in self.callbacks[pattern]:
                answer = callback(self, event)
                if answer is not None and (asyncio.iscoroutine(answer)
                                           or isinstance(answer, asyncio.Future)):
                    running = asyncio.ensure_future(answer, loop=self.loop)
                    self._running.add(running)  # held, so it is not collected midway
                    running.add_done_callback(self._running.discard)
        return list(matches)
