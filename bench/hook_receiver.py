"""The bench's webhook receiver (``python -m bench.hook_receiver``), run by
bench.run in a process and a session of its own, as a CRM's receiver is apart
from whatever places the calls. In the bench's own process it shared the event
loop that offers the calls: that loop's lag counted in the webhook times, and
slowed the answers that free the daemon's slots for its next webhooks.

It answers every POST 204 at once. Its first line out is its port; then one
JSON line per completion webhook: when it arrived, and the event's data. It
stops when its stdin closes. :class:`HookReceiver` runs it, for bench.run's
lanes and bench.store's daemons alike."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from aiohttp import web

from bench.common import REPO


async def hook(request: web.Request) -> web.Response:
    arrived = time.time()
    body = await request.json()
    if body.get("type") == "call.completed":
        sys.stdout.write(json.dumps({"at": arrived, "data": body["data"]}) + "\n")
        sys.stdout.flush()
    return web.Response(status=204)


async def main() -> None:
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await runner.cleanup()


class HookReceiver:
    """The webhook receiver's process (bench/hook_receiver.py); the completion
    webhooks it reports land in ``webhooks`` (call id -> (arrival, data)),
    a dict of its own unless one is given."""

    def __init__(self, webhooks: dict[str, tuple[float, dict[str, Any]]] | None = None) -> None:
        self.webhooks = {} if webhooks is None else webhooks
        self.url = ""
        self._process: asyncio.subprocess.Process | None = None
        self._reading: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.hook_receiver", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, cwd=REPO, start_new_session=True, limit=2**20)
        assert self._process.stdout is not None
        port = await asyncio.wait_for(self._process.stdout.readline(), 30)
        if not port.strip().isdigit():
            raise RuntimeError("the bench's webhook receiver did not start; see its error above")
        self.url = f"http://127.0.0.1:{int(port)}/hook"
        self._reading = asyncio.create_task(self._read(self._process.stdout))

    async def _read(self, out: asyncio.StreamReader) -> None:
        while line := await out.readline():
            event = json.loads(line)
            self.webhooks[event["data"]["call_uuid"]] = (event["at"], event["data"])

    async def stop(self) -> None:
        if self._process is None:
            return
        assert self._process.stdin is not None
        self._process.stdin.close()
        await asyncio.wait_for(self._process.wait(), 10)
        if self._reading is not None:
            await self._reading


if __name__ == "__main__":
    asyncio.run(main())
