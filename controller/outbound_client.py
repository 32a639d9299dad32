"""The HTTP client for every URL the controller itself requests (webhooks,
dial-whom URLs, action URLs): :class:`OutboundClient`, on aiohttp. Any later
outbound URL goes through it too. Clients live as long as what uses them: the
outbox has its own, sized to its concurrency; the live calls (dial-whom and
action URLs) share one (:func:`live_calls_client`) that the Controller makes
and closes, so a request reuses the TLS context and a kept-alive connection
instead of building them again.

It applies the [outbound] policy (controller.outbound) to each request and to
the address it is sent to. The host is resolved once, by
:class:`CheckedResolver`, the connection's only resolver (aiohttp's DNS cache
is off): every address must pass the policy, and aiohttp connects to one of
those very addresses. Nothing resolves the name again, so a name that answers
a public address to the check and a private one to the connection (DNS
rebinding) gets nowhere. The URL's own name stays in the Host header and in
TLS (SNI and the certificate check): aiohttp takes them from the URL, not
from the address. An address written in the URL is not resolved; the policy
checks it before the request (:func:`~controller.outbound.check_before_send`).

aiohttp rather than httpx: a webhook POST costs about a quarter of the CPU
(README, "Performance").

Answers are read only as far as the caller needs (:func:`read_limited`); a
receiver that answers without end is cut off, not buffered. A request whose
answer is used (dial-whom, action URLs) goes through :func:`ask`: its status,
encoding, size and time are checked in one place, each failure a reason a
user can act on.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Collection, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import NamedTuple

import aiohttp
import certifi
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from controller.errors import CallConnectError, OutboundRefused
from controller.outbound import OutboundConfig, check_before_send, redact, resolve_checked

# Compressed answers could grow without bound when decoded; nothing here needs one.
_HEADERS = {"Accept-Encoding": "identity"}
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


class CheckedResolver(AbstractResolver):
    """Resolves a host once and answers only its addresses that pass the
    policy (OutboundRefused if any does not)."""

    def __init__(self, policy: OutboundConfig, timeout: float) -> None:
        self._policy = policy
        self._timeout = timeout

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_UNSPEC) -> list[ResolveResult]:
        addresses = await resolve_checked(host, port, self._policy, self._timeout)
        return [ResolveResult(hostname=host, host=str(address), port=port,
                              family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                              proto=0, flags=_NUMERIC) for address in addresses]

    async def close(self) -> None:
        pass


def tls_context() -> ssl.SSLContext:
    """The CA bundle of ``certifi`` (so a machine without a system store can
    send), or SSL_CERT_FILE / SSL_CERT_DIR when one is set."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    return ssl.create_default_context(cafile=certifi.where())


class OutboundClient:
    """Every request meets ``policy``, refused with OutboundRefused (never
    retried: the same URL would be refused again). Redirects are not followed
    (a 3xx is an answer), cookies are not kept, and proxy settings from the
    environment are not used: the policy is about the address connected to.
    ``max_connections`` None: no limit; an idle connection is closed after
    ``keepalive_expiry`` s. Its session is made at the first request (aiohttp
    needs the running loop); after :meth:`aclose` a request raises RuntimeError."""

    def __init__(self, policy: OutboundConfig, timeout: float, max_connections: int | None = 16,
                 keepalive_expiry: float = 5.0) -> None:
        self._policy = policy
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        # One TLS context: loading the CA bundle is the costly part.
        self._tls = tls_context()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self._closed:
                raise RuntimeError("the outbound client is closed")
            connector = aiohttp.TCPConnector(
                resolver=CheckedResolver(self._policy, self._timeout.total or 10.0),
                use_dns_cache=False, ssl=self._tls, limit=self._max_connections or 0,
                keepalive_timeout=self._keepalive_expiry,
                happy_eyeballs_delay=None)  # the checked addresses in turn, as resolved
            self._session = aiohttp.ClientSession(
                connector=connector, headers=_HEADERS, timeout=self._timeout,
                auto_decompress=False, trust_env=False, cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    def request(self, method: str, url: str | URL, *, headers: Mapping[str, str],
                content: bytes | None = None, timeout: float | None = None,
                ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """The answer, its body unread. Leaving it with its body not read to
        the end closes its connection."""
        check_before_send(str(url), self._policy)
        if isinstance(url, str) and url.isascii():
            # Sent as written: yarl would decode escapes and drop dot segments, and
            # a signed URL's receiver checks those bytes. (Others are encoded.)
            url = URL(url, encoded=True)
        return self._open().request(
            method, url, data=content, headers=headers, allow_redirects=False,
            timeout=self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout))

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()


def outbound_client(policy: OutboundConfig, timeout: float, max_connections: int | None = 16,
                    keepalive_expiry: float = 5.0) -> OutboundClient:
    return OutboundClient(policy, timeout, max_connections, keepalive_expiry)


def error_words(exc: BaseException) -> str:
    """What went wrong, in the client's words but for the SSL context aiohttp
    names in a connection's failure (its repr says nothing to a user)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error}"
    return str(exc)


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body of a response as sent (the client decodes nothing), or None
    once it passes ``limit`` bytes; the rest is never read. Leaving a response
    that was not read to its end closes its connection."""
    declared = response.content_length
    if declared is not None and declared > limit:
        return None
    body = bytearray()
    while chunk := await response.content.readany():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


# For how long the live calls' client keeps an idle connection open for the
# next request to the same host: less than servers commonly keep an idle
# connection (gunicorn 2 s, Node 5 s), so a request is rarely sent on one the
# server is closing at that moment.
LIVE_CALLS_KEEPALIVE_SECONDS = 1.5


def live_calls_client(policy: OutboundConfig) -> OutboundClient:
    """The client the live calls share for dial-whom and action URLs. Not the
    outbox's: a webhook backlog must never hold a connection a call is waiting
    for. No limit on connections (a call never waits for another's; the calls
    themselves are limited by admission); each request brings its own timeout
    (:func:`ask`)."""
    return outbound_client(policy, timeout=10.0, max_connections=None,
                           keepalive_expiry=LIVE_CALLS_KEEPALIVE_SECONDS)


@dataclass(frozen=True)
class AnswerRules:
    """What one use accepts of an answer, and how its reasons read."""

    failure: type[CallConnectError]  # raised with every reason
    max_bytes: int  # a longer body is refused, never read to its end
    statuses: Collection[int] = range(200, 300)
    status_hint: str = ""  # what the URL must answer, after "answered HTTP 500"
    # "could not be asked: " followed by the client's words, or only the error's name.
    error_words: bool = True


class Answered(NamedTuple):
    status: int
    body: bytes  # as sent; compressed answers are refused


async def ask(client: OutboundClient, rules: AnswerRules, method: str, url: str, *,
              timeout: float, headers: Mapping[str, str], content: bytes | None = None,
              params: Mapping[str, str] | None = None) -> Answered:
    """Send one request through ``client`` and read its answer within
    ``timeout`` seconds in all, however slowly it trickles in: a status in
    ``rules.statuses``, uncompressed, at most ``rules.max_bytes``. Anything
    else, a refusal of the [outbound] policy included, raises
    ``rules.failure``; the URL appears only redacted. ``params`` join the
    URL's own query (which may hold a token), replacing a name it has."""
    where = redact(url)
    target: str | URL = url
    try:
        async with asyncio.timeout(timeout):
            if params:
                target = URL(url).update_query(dict(params))
            async with client.request(method, target, content=content, headers=headers,
                                      timeout=timeout) as response:
                status = response.status
                if status not in rules.statuses:
                    raise rules.failure(f"{where} answered HTTP {status}{rules.status_hint}")
                encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
                if encoding != "identity":
                    raise rules.failure(f"{where} answered with Content-Encoding {encoding[:40]!r}; "
                                        "only uncompressed answers are read")
                body = await read_limited(response, rules.max_bytes)
    except OutboundRefused as exc:
        raise rules.failure(exc.message) from None
    except TimeoutError:
        raise rules.failure(f"{where} did not answer within {timeout:g} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        # Some errors quote the URL, and its query may hold a token.
        words = (error_words(exc).replace(str(target), where).replace(url, where)
                 if rules.error_words else type(exc).__name__)
        raise rules.failure(f"{where} could not be asked: {words}") from None
    if body is None:
        raise rules.failure(f"{where} answered more than {rules.max_bytes} bytes")
    return Answered(status, body)
