"""A small Event Socket client of the tests' own, to watch the lab's real
FreeSWITCH independently of the backend under test: ``api`` commands (``show
channels as json``) and the events of chosen channels."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import unquote

HOST, PORT, PASSWORD = "127.0.0.1", 8021, "callconnect-lab"  # sip-lab/lab-freeswitch.sh
TIMEOUT = 10.0
MAX_BODY = 4 * 1024 * 1024


class EslClient:
    """The lab's switch by default; ``host``, ``port``, ``password`` another
    (the Event Socket peer of tests/esl)."""

    def __init__(self, host: str = HOST, port: int = PORT, password: str = PASSWORD) -> None:
        self._address = (host, port, password)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> EslClient:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(*self._address[:2]), TIMEOUT)
        headers, _ = await self._frame()
        assert headers.get("Content-Type") == "auth/request", headers
        reply = await self.command(f"auth {self._address[2]}")
        host, port, _ = self._address
        assert reply.startswith("+OK"), f"the switch at {host}:{port} refused the password: {reply}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._writer is not None
        self._writer.close()

    async def _frame(self) -> tuple[dict[str, str], str]:
        assert self._reader is not None
        headers: dict[str, str] = {}
        while True:
            line = (await asyncio.wait_for(self._reader.readline(), TIMEOUT)).decode().rstrip("\n")
            if not line:
                if headers:
                    break
                continue
            name, _, value = line.partition(": ")
            headers[name] = unquote(value)
        length = int(headers.get("Content-Length", "0"))
        assert length <= MAX_BODY
        body = (await asyncio.wait_for(self._reader.readexactly(length), TIMEOUT)).decode()
        return headers, body

    async def _send(self, text: str) -> None:
        assert self._writer is not None
        self._writer.write(f"{text}\n\n".encode())
        await self._writer.drain()

    async def command(self, text: str) -> str:
        """A command whose answer is a command/reply: its Reply-Text."""
        await self._send(text)
        while True:
            headers, _ = await self._frame()
            if headers.get("Content-Type") == "command/reply":
                return headers.get("Reply-Text", "")

    async def api(self, text: str) -> str:
        await self._send(f"api {text}")
        while True:
            headers, body = await self._frame()
            if headers.get("Content-Type") == "api/response":
                return body

    async def event(self) -> dict[str, str]:
        """The next event (after ``command('event plain ...')``), its headers
        and, under ``_body``, its body."""
        while True:
            headers, body = await self._frame()
            if headers.get("Content-Type") == "text/event-plain":
                event: dict[str, str] = {}
                head, _, event_body = body.partition("\n\n")
                for line in head.splitlines():
                    name, _, value = line.partition(": ")
                    event[name] = unquote(value)
                event["_body"] = event_body
                return event


async def fs_api(text: str) -> str:
    async with EslClient() as client:
        return await client.api(text)


async def channel_rows() -> list[dict[str, str]]:
    answer = json.loads(await fs_api("show channels as json"))
    return list(answer.get("rows", []))
