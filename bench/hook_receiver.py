"""The bench's webhook receiver (``python -m bench.hook_receiver``), run by
bench.run in a process and a session of its own, as a CRM's receiver is apart
from whatever places the calls. In the bench's own process it shared the event
loop that offers the calls: that loop's lag counted in the webhook times, and
slowed the answers that free the daemon's slots for its next webhooks.

It answers every POST 204 at once. Its first line out is its port; then one
JSON line per completion webhook: when it arrived, and the event's data. It
stops when its stdin closes."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiohttp import web


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


if __name__ == "__main__":
    asyncio.run(main())
