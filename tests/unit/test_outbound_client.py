"""The outbound client (controller.outbound_client) with real loopback
receivers: a host is resolved once and the request goes to the address that
was checked (DNS rebinding gets nowhere), the Host header and TLS keep the
URL's name, and answers are read only as far as they are needed."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from controller.outbound import OutboundConfig
from controller.outbound_client import outbound_client
from controller.routing.dial_whom import MAX_BODY_BYTES, DialWhomClient, DialWhomFailed
from controller.store import DeliveryState
from controller.store.sqlite import SqliteStore
from controller.webhooks.outbox import Outbox
from controller.webhooks.post import post_once
from controller.webhooks.sender import WebhookSender
from tests.conftest import LiveClients, Serve, StartReceiver
from tests.unit.webhooks.test_webhook_outbox import enqueue

DEFAULT = OutboundConfig()
LOOPBACK_ALLOWED = OutboundConfig(allow_private=True)
PUBLIC = "93.184.216.34"
WAIT = 10.0


@dataclass
class Resolver:
    """Answers for names, in turn (the last one repeats), and who asked."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)


@pytest.fixture
async def resolver(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Resolver]:
    """The running loop's getaddrinfo, which the policy's resolver (the
    outbound client's only one) calls, answers the test's names as the test says."""
    resolver = Resolver()
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: str | bytes, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode("ascii")
        if host in resolver.answers:
            resolver.asked.append(host)
            turns = resolver.answers[host]
            address = turns.pop(0) if len(turns) > 1 else turns[0]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (address, port or 80))]
        return await real(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    yield resolver


@pytest.fixture
async def connected(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The addresses sockets were connected to, by the running loop (as every
    client connects). A public address is refused at once (the test stands in
    for the internet); the rest connect for real."""
    hosts: list[str] = []
    loop = asyncio.get_running_loop()
    real = loop.sock_connect

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        hosts.append(address[0])
        if address[0] == PUBLIC:
            raise OSError(errno.EHOSTUNREACH, f"{address[0]}: no route (the test has no internet)")
        await real(sock, address)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    return hosts


async def test_a_webhook_goes_to_the_checked_address_not_a_rebound_one(
        resolver: Resolver, connected: list[str], webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    port = receiver.url.split(":")[2].split("/")[0]
    # Public when checked, loopback on every later lookup.
    resolver.answers["rebind.example.com"] = [PUBLIC, "127.0.0.1"]
    sender = WebhookSender(DEFAULT, timeout=2, attempts=1)
    try:
        delivery = await sender.deliver(f"http://rebind.example.com:{port}/hook", "call.completed", {})
    finally:
        await sender.close()
    assert not delivery.delivered and delivery.error is not None and "no route" in delivery.error
    assert receiver.bodies == []
    assert resolver.asked == ["rebind.example.com"] and connected == [PUBLIC]


async def test_dial_whom_asks_the_checked_address_not_a_rebound_one(
        resolver: Resolver, connected: list[str], serve: Serve, live_clients: LiveClients) -> None:
    asked: list[str] = []

    async def who(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.Response(text="+27115550202")

    app = web.Application()
    app.router.add_get("/who", who)
    port = (await serve(app)).rsplit(":", 1)[1]
    resolver.answers["whom.example.com"] = [PUBLIC, "127.0.0.1"]
    client = DialWhomClient("ZA", live_clients(DEFAULT), timeout=2)
    with pytest.raises(DialWhomFailed, match="no route"):
        await client.ask(f"http://whom.example.com:{port}/who", None, {"CallSid": "c1"})
    assert asked == [] and resolver.asked == ["whom.example.com"] and connected == [PUBLIC]


async def test_with_private_allowed_the_pinned_address_is_used_and_the_host_header_kept(
        resolver: Resolver, connected: list[str], webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    port = receiver.url.split(":")[2].split("/")[0]
    # A second lookup would answer an address nothing listens on.
    resolver.answers["pinned.example.com"] = ["127.0.0.1", "127.0.0.2"]
    sender = WebhookSender(LOOPBACK_ALLOWED, timeout=2, attempts=1)
    try:
        delivery = await sender.deliver(f"http://pinned.example.com:{port}/hook?token=t",
                                        "call.completed", {})
    finally:
        await sender.close()
    assert delivery.delivered and delivery.status_code == 200
    [headers] = receiver.headers
    assert headers["host"] == f"pinned.example.com:{port}"
    assert resolver.asked == ["pinned.example.com"] and connected == ["127.0.0.1"]


async def test_tls_checks_the_urls_name_on_the_pinned_connection(
        resolver: Resolver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=pinned.example.com", "-addext", "subjectAltName=DNS:pinned.example.com",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts this certificate alone
    server_names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)  # type: ignore[assignment,func-returns-value]

    async def hook(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    port = runner.addresses[0][1]
    resolver.answers["pinned.example.com"] = ["127.0.0.1"]
    resolver.answers["other.example.com"] = ["127.0.0.1"]
    try:
        client = outbound_client(LOOPBACK_ALLOWED, 5)
        answer = await post_once(client, f"https://pinned.example.com:{port}/hook", b"{}", {}, 5)
        assert answer.status == 204
        assert server_names == ["pinned.example.com"]
        # The same address under a name the certificate does not carry fails its check.
        answer = await post_once(client, f"https://other.example.com:{port}/hook", b"{}", {}, 5)
        assert answer.error is not None and "certificate is not valid for 'other.example.com'" in answer.error
        assert server_names[-1] == "other.example.com", answer
    finally:
        await client.aclose()
        await runner.cleanup()


# ---------------------------------------------------------------- answers read only as far as needed

@dataclass
class Flood:
    """A receiver that answers 200 with a body of ``size`` bytes, streamed;
    it records how much it got to send before the client hung up."""

    size: int
    # Blanks: an answer read whole by mistake is then parsed quickly into nothing.
    chunk: bytes = field(default=b" " * 65000, repr=False)
    sent: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.content_length = self.size
        await response.prepare(request)
        try:
            while self.sent < self.size:
                await response.write(self.chunk)
                self.sent += len(self.chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up
        finally:
            self.done.set()
        return response


FLOOD_BYTES = 65000 * 3200  # 208 MB
# Loopback socket buffers hold a few MB the receiver counts as sent; reading it
# all would be the whole 200 MB.
MOST_SENT = 32 * 1024 * 1024


async def serve_flood(serve: Serve, method: str, path: str) -> tuple[Flood, str]:
    flood = Flood(FLOOD_BYTES)
    app = web.Application()
    app.router.add_route(method, path, flood.handle)
    return flood, await serve(app) + path


async def test_a_huge_webhook_answer_is_cut_off_and_the_delivery_recorded(
        store: SqliteStore, serve: Serve) -> None:
    flood, url = await serve_flood(serve, "POST", "/hook")
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, timeout=WAIT)
    try:
        outcome = await outbox.attempt(await enqueue(store, url))
        await asyncio.wait_for(flood.done.wait(), WAIT)
    finally:
        await outbox.stop()
    assert outcome.state is DeliveryState.DELIVERED and outcome.last_status_code == 200
    assert await store.deliveries(outcome.call_id) == [outcome]
    assert flood.sent < MOST_SENT, f"the receiver got to send {flood.sent} bytes"


async def test_a_huge_dial_whom_answer_fails_and_the_fallback_is_asked(
        serve: Serve, live_clients: LiveClients) -> None:
    flood, url = await serve_flood(serve, "GET", "/who")

    async def fallback(request: web.Request) -> web.Response:
        return web.Response(text="+27115550303")

    app = web.Application()
    app.router.add_get("/fallback", fallback)
    fallback_url = await serve(app) + "/fallback"
    client = DialWhomClient("ZA", live_clients(LOOPBACK_ALLOWED), timeout=WAIT)
    answer = await client.ask(url, fallback_url, {"CallSid": "c1"})
    assert answer.numbers == ["+27115550303"] and answer.url == fallback_url
    # Refused on its declared length, before any of it is read:
    assert flood.sent < MOST_SENT
    with pytest.raises(DialWhomFailed, match=f"answered more than {MAX_BODY_BYTES} bytes"):
        await client.ask(url, None, {"CallSid": "c1"})


async def test_a_dial_whom_answer_without_a_length_is_cut_off_at_the_limit(
        serve: Serve, live_clients: LiveClients) -> None:
    sent: list[int] = [0]

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no length to refuse up front
        await response.prepare(request)
        try:
            while sent[0] < FLOOD_BYTES:
                await response.write(b" " * 65000)
                sent[0] += 65000
        except (ConnectionError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_get("/who", endless)
    url = await serve(app) + "/who"
    with pytest.raises(DialWhomFailed, match=f"answered more than {MAX_BODY_BYTES} bytes"):
        await DialWhomClient("ZA", live_clients(LOOPBACK_ALLOWED), timeout=WAIT).ask(
            url, None, {"CallSid": "c1"})
    assert sent[0] < MOST_SENT


async def test_a_compressed_dial_whom_answer_is_refused(serve: Serve, live_clients: LiveClients) -> None:
    async def gzipped(request: web.Request) -> web.Response:
        assert request.headers["Accept-Encoding"] == "identity"
        return web.Response(body=b"\x1f\x8b", headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/who", gzipped)
    url = await serve(app) + "/who"
    with pytest.raises(DialWhomFailed, match="Content-Encoding 'gzip'; only uncompressed"):
        await DialWhomClient("ZA", live_clients(LOOPBACK_ALLOWED), timeout=WAIT).ask(url, None, {})


# ---------------------------------------------------------------- what the client never does by itself

@dataclass
class Redirecting:
    """/from answers 302 to /to, with a cookie; each request's path and the
    Cookie header it came with are recorded."""

    asked: list[tuple[str, str | None]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.asked.append((request.path, request.headers.get("Cookie")))
        if request.path == "/from":
            response = web.Response(status=302, headers={"Location": "/to"})
            response.set_cookie("session", "s3cret")
            return response
        return web.Response(text="+27115550202")


async def serve_redirecting(serve: Serve, resolver: Resolver) -> tuple[Redirecting, str]:
    """The site, under a name (cookies are not kept for an IP address anyway)."""
    site = Redirecting()
    app = web.Application()
    for method in ("GET", "POST"):
        app.router.add_route(method, "/from", site.handle)
        app.router.add_route(method, "/to", site.handle)
    port = (await serve(app)).rsplit(":", 1)[1]
    resolver.answers["crm.example.com"] = ["127.0.0.1"]
    return site, f"http://crm.example.com:{port}"


async def test_a_webhook_redirect_is_its_answer_and_its_cookie_is_not_sent_again(
        store: SqliteStore, serve: Serve, resolver: Resolver) -> None:
    site, base = await serve_redirecting(serve, resolver)
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, timeout=WAIT)
    try:
        first = await outbox.attempt(await enqueue(store, f"{base}/from"))
        await outbox.attempt(await enqueue(store, f"{base}/from", "evt_2"))
    finally:
        await outbox.stop()
    assert first.state is DeliveryState.FAILED and first.last_error == "HTTP 302"
    assert site.asked == [("/from", None), ("/from", None)]


async def test_a_dial_whom_redirect_fails_the_ask_and_its_cookie_is_not_sent_again(
        serve: Serve, live_clients: LiveClients, resolver: Resolver) -> None:
    site, base = await serve_redirecting(serve, resolver)
    client = DialWhomClient("ZA", live_clients(LOOPBACK_ALLOWED), timeout=WAIT)
    for _ in range(2):
        with pytest.raises(DialWhomFailed, match="answered HTTP 302"):
            await client.ask(f"{base}/from", None, {"CallSid": "c1"})
    assert site.asked == [("/from", None), ("/from", None)]


async def test_a_webhook_url_reaches_the_receiver_exactly_as_written(
        store: SqliteStore, serve: Serve) -> None:
    # A signed URL's escapes are part of what its receiver checks: none is
    # decoded (%2F, %7E, %41) and no dot segment is removed.
    raw: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        raw.append(request.raw_path)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    written = "/hooks/a%7Eb/./c?token=a%2Fb%7E%41&sig=x%3D%3D"
    outbox = Outbox(store, None, outbound=LOOPBACK_ALLOWED, timeout=WAIT)
    try:
        sent = await outbox.attempt(await enqueue(store, await serve(app) + written))
    finally:
        await outbox.stop()
    assert sent.state is DeliveryState.DELIVERED
    assert raw == [written]
