"""Webhook delivery against a real HTTP server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from controller.errors import InvalidField
from controller.webhooks import WebhookSender, check_url, redact


class Receiver:
    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.received: list[tuple[dict[str, Any], str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.json(), request.headers.get("webhook-id", "")))
        status = self.answers.pop(0) if self.answers else 200
        return web.Response(status=status)


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    runners: list[web.AppRunner] = []

    async def start(receiver: Receiver) -> str:
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/hook?token=s3cret"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_delivered_once_with_the_result(serve: Any) -> None:
    receiver = Receiver([200])
    sender = WebhookSender(timeout=2, attempts=3, backoff=0.01)
    delivery = await sender.deliver(await serve(receiver), "call.completed", {"status": "completed"})
    await sender.close()
    assert delivery.delivered and delivery.attempts == 1 and delivery.status_code == 200
    [(body, header_id)] = receiver.received
    assert body == {"id": delivery.event_id, "type": "call.completed",
                    "data": {"status": "completed"}}
    assert header_id == delivery.event_id


async def test_retried_on_5xx_and_429_with_the_same_event_id(serve: Any) -> None:
    receiver = Receiver([503, 429, 200])
    sender = WebhookSender(timeout=2, attempts=3, backoff=0.01)
    delivery = await sender.deliver(await serve(receiver), "call.completed", {})
    await sender.close()
    assert delivery.delivered and delivery.attempts == 3
    assert {body["id"] for body, _ in receiver.received} == {delivery.event_id}


async def test_a_4xx_is_final(serve: Any) -> None:
    receiver = Receiver([404, 200])
    sender = WebhookSender(timeout=2, attempts=3, backoff=0.01)
    delivery = await sender.deliver(await serve(receiver), "call.completed", {})
    await sender.close()
    assert not delivery.delivered and delivery.attempts == 1 and delivery.error == "HTTP 404"
    assert len(receiver.received) == 1


async def test_unreachable_receiver_fails_with_a_reason() -> None:
    sender = WebhookSender(timeout=1, attempts=2, backoff=0.01)
    delivery = await sender.deliver("http://127.0.0.1:9/hook", "call.completed", {})
    await sender.close()
    assert not delivery.delivered and delivery.attempts == 2
    assert delivery.error and "Connect" in delivery.error


def test_urls_are_checked_and_redacted() -> None:
    assert redact("https://user:pw@hooks.example.com:8443/a/b?token=x") == \
        "https://hooks.example.com:8443/a/b"
    for bad in ["ftp://x/y", "not a url", "http:///nohost", "http://a/b\r\nX: y"]:
        with pytest.raises(InvalidField):
            check_url(bad)
