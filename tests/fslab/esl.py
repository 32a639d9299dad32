"""A small Event Socket client of the tests' own, to ask the lab's real
FreeSWITCH (or the Event Socket peer of tests/esl) API commands, apart from
the backend under test: ``show channels as json``, ``originate``, ``hupall``.
The byte stream is cut into frames by the controller's own framer
(controller/backends/freeswitch/wire.py); the client subscribes to no events."""

from __future__ import annotations

import asyncio
from collections import deque

from controller.backends.freeswitch import wire

HOST, PORT, PASSWORD = "127.0.0.1", 8021, "callconnect-lab"  # sip-lab/lab-freeswitch.sh
TIMEOUT = 10.0
READ_SIZE = 65536


class EslClient:
    """The lab's switch by default; ``host``, ``port``, ``password`` another
    (the Event Socket peer of tests/esl)."""

    def __init__(self, host: str = HOST, port: int = PORT, password: str = PASSWORD) -> None:
        self._address = (host, port, password)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._framer = wire.EslFramer()
        self._frames: deque[wire.Frame] = deque()

    async def __aenter__(self) -> EslClient:
        host, port, password = self._address
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), TIMEOUT)
        greeting = await self._frame()
        assert greeting.content_type == "auth/request", greeting.headers
        reply = await self._answer(f"auth {password}", "command/reply")
        assert reply.ok, f"the switch at {host}:{port} refused the password: {reply.text}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._writer is not None
        self._writer.close()

    async def api(self, text: str) -> str:
        """The body of the command's api/response, stripped."""
        return (await self._answer(f"api {text}", "api/response")).text

    async def _answer(self, command: str, content_type: str) -> wire.Reply:
        assert self._writer is not None
        self._writer.write(f"{command}\n\n".encode())
        await asyncio.wait_for(self._writer.drain(), TIMEOUT)
        while True:
            frame = await self._frame()
            if frame.content_type == content_type:
                return wire.Reply(dict(frame.headers), frame.body)
            host, port, _ = self._address
            assert frame.content_type != "text/disconnect-notice", (
                f"the switch at {host}:{port} hung up on `{command.split()[0]}`: {frame.body}")

    async def _frame(self) -> wire.Frame:
        assert self._reader is not None
        while not self._frames:
            data = await asyncio.wait_for(self._reader.read(READ_SIZE), TIMEOUT)
            host, port, _ = self._address
            assert data, f"the switch at {host}:{port} closed the Event Socket connection"
            self._frames.extend(self._framer.feed(data))
        return self._frames.popleft()


async def fs_api(text: str) -> str:
    async with EslClient() as client:
        return await client.api(text)


async def channel_rows() -> list[dict[str, str]]:
    return wire.channel_rows(await fs_api("show channels as json"))
