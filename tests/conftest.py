"""Fixtures shared by unit and lab tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web


class WebhookReceiver:
    """A real HTTP server on loopback that records what it is sent and answers
    with the given status codes in turn (then 200)."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []
        self.webhook_ids: list[str] = []
        self.arrived = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        self.webhook_ids.append(request.headers.get("webhook-id", ""))
        self.arrived.set()
        return web.Response(status=self.answers.pop(0) if self.answers else 200)


StartReceiver = Callable[..., Awaitable[WebhookReceiver]]


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[StartReceiver]:
    runners: list[web.AppRunner] = []

    async def start(answers: list[int] | None = None) -> WebhookReceiver:
        receiver = WebhookReceiver(answers or [])
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook?token=s3cret"
        return receiver

    yield start
    for runner in runners:
        await runner.cleanup()
