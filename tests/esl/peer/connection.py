"""One Event Socket connection: the controller's commands in, replies and events out."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, SupportsIndex

from .wire import DISCONNECT_TEXT, event_frame

if TYPE_CHECKING:
    from .switch import EslPeer



class ChunkReader(asyncio.StreamReader):
    """A connection's reader that keeps the last pieces of bytes as the
    socket gave them (``received``: what the controller sent in one write
    comes as one piece on loopback), and reads what came before a reset, as a
    switch reading its socket does (Linux keeps it readable: the reset is
    seen after it)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: collections.deque[bytes] = collections.deque(maxlen=1000)

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:  # bytes, from the socket
        self.received.append(bytes(data))
        super().feed_data(data)

    def set_exception(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionResetError):
            self.feed_eof()
            return
        super().set_exception(exc)


class PeerConnection:
    """One Event Socket client, served as mod_event_socket's listener_run does."""

    def __init__(self, peer: EslPeer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.peer = peer
        self.reader = reader
        self.writer = writer
        self.authed = False
        self.format = "plain"
        self.events: set[str] = set()
        self.subclasses: set[str] = set()  # CUSTOM's, after "CUSTOM" in an event command
        self.filters: list[tuple[str, str]] = []
        self.commands: list[str] = []
        self.received = reader.received if isinstance(reader, ChunkReader) else None
        self.wire = bytearray()  # every byte sent, for recording fixtures
        self.sent: list[tuple[str, str]] = []  # (Event-Name, Unique-ID) of every event sent
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closed = False

    # ------------------------------------------------------------ writing

    def send_raw(self, data: bytes) -> None:
        if not self._closed:
            self._out.put_nowait(data)

    def reply(self, text: str) -> None:
        self.send_raw(f"Content-Type: command/reply\nReply-Text: {text}\n\n".encode())

    def api_response(self, text: str) -> None:
        data = (text or "-ERR no reply\n").encode()
        self.send_raw(f"Content-Type: api/response\nContent-Length: {len(data)}\n\n".encode()
                      + data)

    def offer(self, name: str, headers: list[tuple[str, str]], body: str | None) -> None:
        if not self.authed or not ("ALL" in self.events or name in self.events):
            return
        subclass = dict(headers).get("Event-Subclass")
        if name == "CUSTOM" and "ALL" not in self.events and subclass not in self.subclasses:
            return  # mod_event_socket: a CUSTOM event only for a subscribed subclass
        if self.filters and not self._passes(headers):
            return
        self.sent.append((name, dict(headers).get("Unique-ID", "")))
        self.send_raw(event_frame(headers, body, self.format))

    def _passes(self, headers: list[tuple[str, str]]) -> bool:
        values = {name.lower(): value for name, value in headers}
        return any(values.get(name.lower(), "").lower() == value.lower()
                   for name, value in self.filters)

    async def _write_loop(self) -> None:
        rng = random.Random(len(self.peer.connections))
        while True:
            data = await self._out.get()
            if data is None:
                break
            self.wire += data
            try:
                if self.peer.split_writes:
                    i = 0
                    while i < len(data):
                        size = rng.randint(1, 48)
                        self.writer.write(data[i:i + size])
                        await self.writer.drain()
                        await asyncio.sleep(0)
                        i += size
                else:
                    self.writer.write(data)
                    await self.writer.drain()
            except (ConnectionError, RuntimeError):
                break

    # ------------------------------------------------------------ reading

    async def _read_packet(self) -> tuple[str, dict[str, str], str] | None:
        lines: list[str] = []
        while True:
            raw = await self.reader.readline()
            if not raw:
                return None
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line:
                if lines:
                    break
                continue
            lines.append(line)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = ""
        if headers.get("content-length", "").isdigit():
            body = (await self.reader.readexactly(int(headers["content-length"]))).decode()
        return lines[0], headers, body

    async def run(self) -> None:
        writer_task = asyncio.create_task(self._write_loop())
        aborted = False
        try:
            if self.peer.acl_reject:
                message = "Access Denied, go away.\n"
                self.send_raw(f"Content-Type: text/rude-rejection\nContent-Length: "
                              f"{len(message)}\n\n{message}".encode())
                return
            self.send_raw(b"Content-Type: auth/request\n\n")
            while True:
                packet = await self._read_packet()
                if packet is None:
                    aborted = True
                    break
                command, headers, body = packet
                self.commands.append(command)
                if not await self._handle(command, headers, body):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            aborted = True
        finally:
            if not aborted and not self.peer.acl_reject:
                self.send_raw(f"Content-Type: text/disconnect-notice\nContent-Length: "
                              f"{len(DISCONNECT_TEXT)}\n\n{DISCONNECT_TEXT}".encode())
            self._out.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer_task, 2)
            self._closed = True
            with contextlib.suppress(Exception):
                self.writer.close()

    def abort(self) -> None:
        self._closed = True
        self.writer.transport.abort()

    # ------------------------------------------------------------ commands

    async def _handle(self, command: str, headers: dict[str, str], body: str) -> bool:
        lower = command.lower()
        if lower.startswith(("exit", "...")):
            self.reply("+OK bye")
            return False
        if not self.authed:
            if lower.startswith("auth "):
                if command[5:] == self.peer.password:
                    self.authed = True
                    self.reply("+OK accepted")
                    return True
                self.reply("-ERR invalid")
                return False
            self.reply("-ERR command not found")
            return True
        if lower.startswith("filter "):
            self._filter(command[7:].strip())
        elif lower.startswith("sendmsg"):
            self.reply(await self._sendmsg(command[7:].strip() or headers.get("session-id", ""),
                                           headers))
        elif lower.startswith("api "):
            await self._api(command[4:].strip())
        elif lower.startswith("bgapi "):
            self._bgapi(command[6:].strip(), headers.get("job-uuid"))
        elif lower.startswith("nixevent"):
            for name in command.split()[1:]:
                self.events.discard(name.upper())
            self.reply("+OK events nixed")
        elif lower.startswith("noevents"):
            self.events.clear()
            self.reply("+OK no longer listening for events")
        elif lower.startswith("event"):
            self._event(command.split()[1:])
        else:
            self.reply("-ERR command not found")
        return True

    def _event(self, words: list[str]) -> None:
        names = 0
        custom = False
        for i, word in enumerate(words):
            if i == 0 and word.lower() in ("plain", "json", "xml"):
                self.format = word.lower()
                continue
            if custom:  # the words after CUSTOM are its subclasses, as given
                self.subclasses.add(word)
                continue
            self.events.add(word.upper())
            custom = word.upper() == "CUSTOM"
            names += 1
        if not names:
            self.reply("-ERR no keywords supplied")
            return
        self.reply(f"+OK event listener enabled {self.format}")

    def _filter(self, text: str) -> None:
        name, _, value = text.partition(" ")
        if name.lower() == "delete" and value:
            name, _, value = value.partition(" ")
            if name.lower() == "all":
                self.filters.clear()
            else:
                self.filters = [(n, v) for n, v in self.filters
                                if not (n.lower() == name.lower() and (not value or v == value))]
            self.reply(f"+OK filter deleted. [{name}][{value}]")
        elif value:
            self.filters.append((name, value))
            self.reply(f"+OK filter added. [{name}]=[{value}]")
        else:
            self.reply("-ERR invalid syntax")

    async def _sendmsg(self, channel_uuid: str, headers: dict[str, str]) -> str:
        hook = self.peer.on_sendmsg.get(headers.get("execute-app-name", ""))
        refusal = await hook(channel_uuid) if hook is not None else None
        return refusal or self.peer.sendmsg(channel_uuid, headers)

    async def _api(self, text: str) -> None:
        name, _, args = text.partition(" ")
        if name in self.peer.stall:
            await asyncio.sleep(self.peer.stall[name])  # the listener is busy with it
        if name in self.peer.refuse:
            self.api_response(self.peer.refuse[name])
            return
        answer = await self.peer.run_api(name, args)
        if name in self.peer.meanwhile:
            await self.peer.meanwhile[name](args)
        self.api_response(answer)

    def _bgapi(self, text: str, job_uuid: str | None) -> None:
        job = (job_uuid or str(uuid.uuid4()))[:36]
        name, _, args = text.partition(" ")
        if f"bgapi {name}" in self.peer.refuse:
            self.reply(self.peer.refuse[f"bgapi {name}"])
            return
        self.send_raw(f"Content-Type: command/reply\nReply-Text: +OK Job-UUID: {job}\n"
                      f"Job-UUID: {job}\n\n".encode())
        self.peer.spawn(self.peer.background_job(job, name, args))

