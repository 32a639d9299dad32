"""Fixtures shared by unit and lab tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from controller.outbound import OutboundConfig
from controller.outbound_client import OutboundClient, live_calls_client

# The live-call fixtures both labs' suites use (agents, the calling phone, a
# URL that answers actions).
pytest_plugins = ("tests.lab.live_fixtures",)


class WebhookReceiver:
    """A real HTTP server on loopback that records what it is sent and answers
    with the given status codes in turn (then 200), with a Retry-After header
    on every answer when retry_after is given."""

    def __init__(self, answers: list[int], retry_after: str | None = None) -> None:
        self.answers = list(answers)
        self.retry_after = retry_after
        self.bodies: list[dict[str, Any]] = []
        self.raw_bodies: list[bytes] = []  # as received, to verify signatures on
        self.headers: list[dict[str, str]] = []  # names lower-cased
        self.webhook_ids: list[str] = []
        self.arrived = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.raw_bodies.append(raw)
        self.bodies.append(json.loads(raw))
        self.headers.append({name.lower(): value for name, value in request.headers.items()})
        self.webhook_ids.append(request.headers.get("webhook-id", ""))
        self.arrived.set()
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
        return web.Response(status=self.answers.pop(0) if self.answers else 200, headers=headers)


StartReceiver = Callable[..., Awaitable[WebhookReceiver]]
Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Serve an aiohttp app on a free loopback port until the test ends;
    returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def webhook_receiver(serve: Serve) -> StartReceiver:
    async def start(answers: list[int] | None = None, retry_after: str | None = None) -> WebhookReceiver:
        receiver = WebhookReceiver(answers or [], retry_after)
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        receiver.url = f"{await serve(app)}/hook?token=s3cret"
        return receiver

    return start


LiveClients = Callable[[OutboundConfig], OutboundClient]


@pytest.fixture
async def live_clients() -> AsyncIterator[LiveClients]:
    """Makes the live calls' outbound client for a policy, as a Controller
    does, and closes each when the test ends."""
    made: list[OutboundClient] = []

    def make(policy: OutboundConfig) -> OutboundClient:
        made.append(live_calls_client(policy))
        return made[-1]

    yield make
    for client in made:
        await client.aclose()
