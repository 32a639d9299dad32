"""The HTTP client for every URL the controller itself requests (webhooks,
dial-whom URLs): :func:`outbound_client`. Any later outbound URL goes through it too.

It applies the [outbound] policy (controller.outbound) to each request and to
the address it is sent to. The host is resolved once, in
:class:`PinnedBackend`: every address must pass the policy, and the
connection goes to one of those very addresses. Nothing resolves the name
again, so a name that answers a public address to the check and a private one
to the connection (DNS rebinding) gets nowhere. The URL's own name stays in
the Host header and in TLS (SNI and the certificate check): httpcore hands it
to ``start_tls`` itself.

Answers are read only as far as the caller needs (:func:`read_limited`); a
receiver that answers without end is cut off, not buffered.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpcore
import httpx

from controller.outbound import OutboundConfig, check_before_send, resolve_checked

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
        super().__init__(limits=limits)
        # httpx takes no network backend; its pool is rebuilt with one, as it built it.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(policy))


def outbound_client(policy: OutboundConfig, timeout: float, max_connections: int = 16) -> httpx.AsyncClient:
    """A client whose every request meets ``policy``, refused with
    OutboundRefused (never retried: the same URL would be refused again).
    Redirects are not followed (a 3xx is an answer), and proxy settings from
    the environment are not used: the policy is about the address connected to."""

    async def check(request: httpx.Request) -> None:
        check_before_send(str(request.url), policy)

    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
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
