"""A TCP proxy between the controller and the lab's real AMI, for fault tests:
it can cut Asterisk's stream into small reads, slip malformed frames between
real ones, go silent without closing (a link that dies with no FIN), and
answer Redirects itself as Asterisk does while the channel's last Redirect is
still being carried out, and hold back events of a kind, as an AMI account
whose eventfilter does not pass them."""

from __future__ import annotations

import asyncio
import contextlib
import random

AMI = ("127.0.0.1", 5038)
FRAME_END = b"\r\n\r\n"

# Frames real Asterisk never sends, each complete (so the real ones around it
# stay whole): lines without a colon, binary junk, unknown and half events, a
# response to no action, an event name that is a Python attribute, and
# headers given twice.
JUNK_FRAMES = (
    b"Event: Newchannel\r\nChannel PJSIP/no-colon\r\nUniqueid\r\n\r\n",
    b"\x00\xff\xfe\x80 not a frame \x1b[2J\r\n\r\n",
    b"Event: SomethingNew\r\nPrivilege: call,all\r\nFoo: bar\r\n\r\n",
    b"Event: DialBegin\r\nPrivilege: call,all\r\n\r\n",
    b"Event: Hangup\r\nUniqueid: cc-not-a-call\r\nCause: many\r\n\r\n",
    b"Response: Success\r\nActionID: nobody-asked\r\nMessage: Pong\r\n\r\n",
    b"Event: _init__\r\nTimestamp: soon\r\n\r\n",
    b"Event: UserEvent\r\nUserEvent: CallConnect\r\nTimestamp: nan\r\n\r\n",
    b": \r\n:\r\n\r\n",
    b"Event: Hangup\r\nEvent: Newchannel\r\nActionID: a\r\nActionID: b\r\n\r\n",
)


class AmiProxy:
    def __init__(self, chunk: int = 0, junk: bool = False, seed: int = 7,
                 redirects_refused: int = 0, withheld: tuple[str, ...] = ()) -> None:
        self.chunk = chunk  # > 0: pass Asterisk's bytes on in reads of 1..chunk bytes
        self.junk = junk  # slip a JUNK_FRAME in after every real frame
        # Each Redirect is refused this many times before it reaches Asterisk.
        self.redirects_refused = redirects_refused
        self.refusals = 0
        # Events of these names never reach the controller.
        self.withheld = {f"Event: {name}".encode() for name in withheld}
        self.withheld_count = 0
        self.random = random.Random(seed)
        self.connections = 0
        self.junk_sent = 0
        self.silent: list[asyncio.Event] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def go_silent(self) -> None:
        """Every open connection stops passing bytes either way, without closing;
        new connections work."""
        for silent in self.silent:
            silent.set()

    async def _serve(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        upstream_reader, upstream_writer = await asyncio.open_connection(*AMI)
        silent = asyncio.Event()
        self.silent.append(silent)
        pumps = [asyncio.create_task(self._actions(client_reader, upstream_writer, client_writer,
                                                   silent)),
                 asyncio.create_task(self._pump(upstream_reader, client_writer, silent))]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        if silent.is_set():
            await asyncio.Event().wait()  # hold both sockets open, say nothing
        for pump in pumps:
            pump.cancel()
        for writer in (client_writer, upstream_writer):
            with contextlib.suppress(OSError):
                writer.close()

    async def _actions(self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter,
                       client: asyncio.StreamWriter, silent: asyncio.Event) -> None:
        """The controller's actions on to Asterisk, but the Redirects to refuse."""
        pending = b""
        refused: dict[bytes, int] = {}  # a Redirect's frame without its ActionID -> refusals
        while not silent.is_set():
            data = await reader.read(4096)
            if not data or silent.is_set():
                return
            pending += data
            while FRAME_END in pending:
                frame, _, pending = pending.partition(FRAME_END)
                lines = frame.split(b"\r\n")
                action_id = next((line for line in lines if line.lower().startswith(b"actionid:")),
                                 None)
                if b"Action: Redirect" in lines and action_id is not None:
                    same = b"\r\n".join(line for line in lines if line != action_id)
                    if refused.get(same, 0) < self.redirects_refused:
                        refused[same] = refused.get(same, 0) + 1
                        self.refusals += 1
                        client.write(b"Response: Error\r\n" + action_id + b"\r\n"
                                     b"Message: Redirect failed, channel not up.\r\n\r\n")
                        continue
                upstream.write(frame + FRAME_END)
            await upstream.drain()
            await client.drain()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    silent: asyncio.Event) -> None:
        """Asterisk's frames on to the controller, cut and salted as asked."""
        pending = b""
        while not silent.is_set():
            data = await reader.read(4096)
            if not data or silent.is_set():
                return
            pending += data
            out = b""
            while FRAME_END in pending:
                frame, _, pending = pending.partition(FRAME_END)
                if frame.split(b"\r\n", 1)[0] in self.withheld:
                    self.withheld_count += 1
                    continue
                out += frame + FRAME_END
                if self.junk and not frame.startswith(b"Asterisk Call Manager"):
                    out += self.random.choice(JUNK_FRAMES)
                    self.junk_sent += 1
            await self._write(writer, out)

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if not self.chunk:
            writer.write(data)
            await writer.drain()
            return
        while data:
            size = self.random.randint(1, self.chunk)
            writer.write(data[:size])
            data = data[size:]
            await writer.drain()
            await asyncio.sleep(0.0005)  # its own read on the other side
