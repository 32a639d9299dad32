"""Asking a URL for a call's next actions, against a real HTTP server on
loopback: the POST is signed like every webhook, a good answer gives checked
actions, and every other answer a reason a user can act on."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from controller.actions.fetch import MAX_ANSWER_BYTES, ActionFetcher, FetchFailed
from controller.jsonio import loads
from controller.outbound import OutboundConfig
from controller.outbound_client import OutboundClient
from tests.conftest import LiveClients, Serve

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
LOOPBACK = OutboundConfig(allow_private=True)
Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Url:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answer: Answer | None = None
        self.base = ""
        self.client: OutboundClient  # the live calls' client that asks it

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(({k.lower(): v for k, v in request.headers.items()},
                              await request.read()))
        assert self.answer is not None
        return await self.answer(request)


@pytest.fixture
async def url(serve: Serve, live_clients: LiveClients) -> Url:
    server = Url()
    server.client = live_clients(LOOPBACK)
    app = web.Application()
    app.router.add_post("/next", server.handle)
    server.base = await serve(app)
    return server


def answering(status: int = 200, body: Any = b"", content_type: str = "application/json") -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, content_type=content_type)
    return answer


async def fetch(url: Url, timeout: float = 2.0) -> Any:
    fetcher = ActionFetcher(url.client, SECRET, timeout)
    return await fetcher.fetch(f"{url.base}/next?token=s3cret", "gather",
                               {"call_uuid": "call-1", "digits": "2"})


async def test_the_answer_gives_checked_actions_and_the_post_is_signed(url: Url) -> None:
    url.answer = answering(body=b'{"actions": [{"type": "connect", "to": "group:support"}]}')
    [action] = await fetch(url)
    assert action.type == "connect" and action.to == "group:support"
    [(headers, body)] = url.received
    Webhook(SECRET).verify(body.decode(), headers)  # raises unless signed as webhooks are
    sent = loads(body)
    assert sent["type"] == "call.gathered" and sent["data"] == {"call_uuid": "call-1", "digits": "2"}


async def test_no_content_gives_no_actions(url: Url) -> None:
    url.answer = answering(status=204, content_type="text/plain")
    assert await fetch(url) is None


async def slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(1)
    return web.Response(text="{}")


@pytest.mark.parametrize(("answer", "reason"), [
    (answering(status=500), "answered HTTP 500"),
    (answering(body=b"<html>oops</html>", content_type="text/html"), "not JSON"),
    (answering(body=b'{"actions": [{"type": "gather", "max_digits": 99}]}'),
     "actions[0].max_digits"),
    (answering(body=b'{"next": []}'), "actions"),
    (answering(body=b" " * (MAX_ANSWER_BYTES + 1)), f"more than {MAX_ANSWER_BYTES} bytes"),
    (slow, "did not answer within 0.3 s"),
])
async def test_any_other_answer_fails_with_a_reason(url: Url, answer: Answer, reason: str) -> None:
    url.answer = answer
    with pytest.raises(FetchFailed) as caught:
        await fetch(url, timeout=0.3)
    assert reason in caught.value.message
    assert "s3cret" not in caught.value.message  # the query's token is never repeated


async def test_a_url_the_policy_refuses_is_never_asked(url: Url, live_clients: LiveClients) -> None:
    url.answer = answering(body=b'{"actions": []}')
    fetcher = ActionFetcher(live_clients(OutboundConfig()), None, 2.0)
    with pytest.raises(FetchFailed):
        await fetcher.fetch(f"{url.base}/next", "redirect", {})
    assert url.received == []
