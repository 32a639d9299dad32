"""The HTTP client for every URL the controller itself requests (webhooks,
dial-whom URLs, action URLs): :func:`outbound_client`. Any later outbound URL
goes through it too. Clients live as long as what uses them: the outbox has
its own, sized to its concurrency; the live calls (dial-whom and action URLs)
share one (:func:`live_calls_client`) that the Controller makes and closes, so
a request reuses the TLS context and a kept-alive connection instead of
building them again.

It applies the [outbound] policy (controller.outbound) to each request and to
the address it is sent to. The host is resolved once, in
:class:`PinnedBackend`: every address must pass the policy, and the
connection goes to one of those very addresses. Nothing resolves the name
again, so a name that answers a public address to the check and a private one
to the connection (DNS rebinding) gets nowhere. The URL's own name stays in
the Host header and in TLS (SNI and the certificate check): httpcore hands it
to ``start_tls`` itself.

Answers are read only as far as the caller needs (:func:`read_limited`); a
receiver that answers without end is cut off, not buffered. A request whose
answer is used (dial-whom, action URLs) goes through :func:`ask`: its status,
encoding, size and time are checked in one place, each failure a reason a
user can act on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import httpcore
import httpx

from controller.errors import CallConnectError, OutboundRefused
from controller.outbound import OutboundConfig, check_before_send, redact, resolve_checked

# Compressed answers could grow without bound when decoded; nothing here needs one.
_HEADERS = {"Accept-Encoding": "identity"}


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, checks every address against the policy and
    connects to a checked address."""

    def __init__(self, policy: OutboundConfig, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve_checked(host, port, self._policy, timeout)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took over {timeout} s") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"could not resolve {host}: {exc}") from None
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout, local_address,
                                                     socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # the next address may answer
        assert failure is not None  # resolve_checked returns at least one address
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("outbound requests go over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: OutboundConfig, limits: httpx.Limits) -> None:
        # One TLS context (loading the CA bundle is the costly part), given to
        # httpx's pool and to the pool that replaces it.
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context, limits=limits)
        # httpx takes no network backend; its pool is rebuilt with one, as it built it.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(policy))


def outbound_client(policy: OutboundConfig, timeout: float, max_connections: int | None = 16,
                    max_keepalive: int | None = None, keepalive_expiry: float = 5.0,
                    ) -> httpx.AsyncClient:
    """A client whose every request meets ``policy``, refused with
    OutboundRefused (never retried: the same URL would be refused again).
    Redirects are not followed (a 3xx is an answer), and proxy settings from
    the environment are not used: the policy is about the address connected to.
    ``max_connections`` None: no limit; ``max_keepalive`` None: as many as
    ``max_connections``; an idle connection is closed after ``keepalive_expiry`` s."""

    async def check(request: httpx.Request) -> None:
        check_before_send(str(request.url), policy)

    limits = httpx.Limits(max_connections=max_connections,
                          max_keepalive_connections=max_connections if max_keepalive is None
                          else max_keepalive, keepalive_expiry=keepalive_expiry)
    return httpx.AsyncClient(transport=_PinnedTransport(policy, limits), timeout=timeout,
                             follow_redirects=False, trust_env=False, headers=_HEADERS,
                             event_hooks={"request": [check]})


async def read_limited(response: httpx.Response, limit: int) -> bytes | None:
    """The body of a streamed response as sent (not decoded), or None once it
    passes ``limit`` bytes; the rest is never read. Closing a response that was
    not read to its end closes its connection."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


# Idle connections the live calls' client keeps open for the next request to
# the same host, and for how long: less than servers commonly keep an idle
# connection (gunicorn 2 s, Node 5 s), so a request is rarely sent on one the
# server is closing at that moment (it would fail: nothing here retries).
LIVE_CALLS_KEEPALIVE = 16
LIVE_CALLS_KEEPALIVE_SECONDS = 1.5


def live_calls_client(policy: OutboundConfig) -> httpx.AsyncClient:
    """The client the live calls share for dial-whom and action URLs. Not the
    outbox's: a webhook backlog must never hold a connection a call is waiting
    for. No limit on connections (a call never waits for another's; the calls
    themselves are limited by admission); each request brings its own timeout
    (:func:`ask`)."""
    return outbound_client(policy, timeout=10.0, max_connections=None,
                           max_keepalive=LIVE_CALLS_KEEPALIVE,
                           keepalive_expiry=LIVE_CALLS_KEEPALIVE_SECONDS)


@dataclass(frozen=True)
class AnswerRules:
    """What one use accepts of an answer, and how its reasons read."""

    failure: type[CallConnectError]  # raised with every reason
    max_bytes: int  # a longer body is refused, never read to its end
    statuses: Collection[int] = range(200, 300)
    status_hint: str = ""  # what the URL must answer, after "answered HTTP 500"
    # "could not be asked: " followed by httpx's words, or only the error's name.
    error_words: bool = True


class Answered(NamedTuple):
    status: int
    body: bytes  # as sent; compressed answers are refused


async def ask(client: httpx.AsyncClient, rules: AnswerRules, method: str, url: str, *,
              timeout: float, headers: Mapping[str, str], content: bytes | None = None,
              params: Mapping[str, str] | None = None) -> Answered:
    """Send one request through ``client`` (an :func:`outbound_client`) and
    read its answer within ``timeout`` seconds in all, however slowly it
    trickles in: a status in ``rules.statuses``, uncompressed, at most
    ``rules.max_bytes``. Anything else, a refusal of the [outbound] policy
    included, raises ``rules.failure``; the URL appears only redacted.
    ``params`` join the URL's own query (which may hold a token: httpx's
    ``params`` would replace it)."""
    where = redact(url)
    target = httpx.URL(url).copy_merge_params(dict(params)) if params else url
    try:
        async with (
            asyncio.timeout(timeout),
            client.stream(method, target, content=content, headers=headers,
                          timeout=timeout) as response,
        ):
            status = response.status_code
            if status not in rules.statuses:
                raise rules.failure(f"{where} answered HTTP {status}{rules.status_hint}")
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding != "identity":
                raise rules.failure(f"{where} answered with Content-Encoding {encoding[:40]!r}; "
                                    "only uncompressed answers are read")
            body = await read_limited(response, rules.max_bytes)
    except OutboundRefused as exc:
        raise rules.failure(exc.message) from None
    except (TimeoutError, httpx.TimeoutException):
        raise rules.failure(f"{where} did not answer within {timeout:g} s") from None
    except (httpx.HTTPError, OSError) as exc:
        words = str(exc) if rules.error_words else type(exc).__name__
        raise rules.failure(f"{where} could not be asked: {words}") from None
    if body is None:
        raise rules.failure(f"{where} answered more than {rules.max_bytes} bytes")
    return Answered(status, body)
