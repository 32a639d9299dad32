"""The API's HTTP server: uvicorn with httptools on uvloop, plus what uvicorn
lacks against slow, idle or oversized clients.

uvicorn's ``timeout_keep_alive`` only runs between two requests; nothing
limits how long a request's head or body may take to arrive, so each
half-sent request holds a socket (and a file) for good. Its
``limit_concurrency`` answers 503 but still accepts and keeps every socket,
so it does not keep the process under its open-file limit. httptools bounds
neither a head's size nor its number of header fields. Hence a small
protocol subclass: the head must arrive whole within ``header_timeout``
(from the connection, or from the previous answer), the body within
``body_timeout`` after it; a head over MAX_HEAD_BYTES or MAX_HEADER_FIELDS
gets 431 and the connection closes; and at ``max_connections`` a new
connection closes the connection that has waited longest for a request head,
or is itself closed when every connection is busy with a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import resource
import socket
from collections.abc import Callable, Iterator
from typing import Any, cast

import structlog
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from controller.config import ApiConfig
from controller.errors import ConfigError, DaemonFailed

log = structlog.get_logger(__name__)

# Connections the kernel queues until the daemon accepts them: a quarter of
# the open-file limit, within these bounds. A burst of new connections past
# the queue overflows it, and the kernel drops their SYNs: each such client
# then waits for its SYN to be sent again (1 s, then 3 s, then 7 s). At 64, a
# bench at 75 calls/s overflowed it 636 times in 15 s. asyncio accepts the
# whole queue in one go before any connection is counted, so the open-file
# limit must leave room for it, and for the store, the switch link, webhook
# and dial-whom requests and the logs (OTHER_FILES).
MIN_LISTEN_BACKLOG = 64
MAX_LISTEN_BACKLOG = 1024
OTHER_FILES = 128
MIN_CONNECTIONS = 16
# A request's head (request line and header fields): h11's bound, which the
# daemon had before httptools; and Apache's default number of fields. Each
# field is kept parsed while the head arrives, so the count bounds memory too.
MAX_HEAD_BYTES = 16384
MAX_HEADER_FIELDS = 100
_REFUSAL = (f"request head too large: at most {MAX_HEAD_BYTES} bytes and {MAX_HEADER_FIELDS} "
            "header fields").encode()
HEAD_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                  b"content-type: text/plain; charset=utf-8\r\n"
                  b"content-length: " + str(len(_REFUSAL)).encode() + b"\r\n"
                  b"connection: close\r\n\r\n" + _REFUSAL)


class ApiServer(uvicorn.Server):
    """uvicorn, minus its own signal handling: the daemon decides when the API
    stops (after draining), not the first SIGTERM. It serves the sockets of
    :func:`listen`, and calls ``on_serving`` once it accepts on them."""

    on_serving: Callable[[], None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.on_serving is not None and not self.should_exit:
            self.on_serving()


def listen(settings: ApiConfig, backlog: int) -> list[socket.socket]:
    """Bind and listen on api.host and api.port (every address the host
    resolves to, as asyncio would) before the server starts, so a taken
    address is a clear error here rather than a log line of uvicorn's."""
    address = f"{settings.host}:{settings.port}"
    try:
        found = socket.getaddrinfo(settings.host or None, settings.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise DaemonFailed(f"the API cannot listen on {address}: api.host does not resolve "
                           f"({exc}); set api.host (CALLCONNECT_API_HOST) to an address of this "
                           "machine", address=address, setting="api.host") from exc
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, sockaddr in dict.fromkeys(found):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(backlog)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise DaemonFailed(f"the API cannot listen on {address}: {exc.strerror or exc}; "
                           f"{_bind_hint(exc, settings)}", address=address,
                           setting="api.port") from exc
    return sockets


def _bind_hint(exc: OSError, settings: ApiConfig) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f"another process holds it (another callconnect daemon?): find it with "
                f"`ss -ltnp 'sport = :{settings.port}'` and stop it, or set api.port "
                "(CALLCONNECT_API_PORT) to a free port")
    if exc.errno == errno.EACCES:
        return ("a port below 1024 needs CAP_NET_BIND_SERVICE: set api.port "
                "(CALLCONNECT_API_PORT) to 1024 or above")
    if exc.errno == errno.EADDRNOTAVAIL:
        return "api.host is not an address of this machine: set api.host (CALLCONNECT_API_HOST)"
    return "check api.host and api.port (CALLCONNECT_API_HOST, CALLCONNECT_API_PORT)"


class ConnectionGuard:
    """Shared by every connection of one server."""

    def __init__(self, header_timeout: float, body_timeout: float, max_connections: int) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        # Connections waiting for a request head, longest waiting first.
        self.waiting: dict[GuardedProtocol, None] = {}


class HeadTooLarge(Exception):
    """Raised from a parser callback: it stops httptools before the request
    reaches the app; uvicorn then logs "Invalid HTTP request received." and
    calls ``send_400_response``, which answers 431 instead."""


class GuardedProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard
        self.phase = ""  # head, body, or app (the request is whole)
        self.deadline: asyncio.TimerHandle | None = None
        self.in_body = False  # the parser is inside a request's body
        self.unanswered = 0  # requests whose head has come and whose answer has not gone
        self.head_bytes = 0  # of the head being read
        self.head_too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        room = len(self.connections) < self.guard.max_connections
        if not room and self.guard.waiting:
            oldest = next(iter(self.guard.waiting))
            oldest.drop("api.connection_evicted")
            room = True
        super().connection_made(transport)
        if not room:
            log.warning("api.connection_refused", reason="api.max_connections reached",
                        max_connections=self.guard.max_connections)
            transport.abort()
            return
        self.follow()

    def data_received(self, data: bytes) -> None:
        # Counted per read: a read that ends one request and starts the next
        # one's head does not count against it, so a head may pass the bound
        # by at most one read before it is refused.
        if not self.in_body:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return  # answered already: httptools could not parse it, or too many fields
        if not self.in_body and self.head_bytes > MAX_HEAD_BYTES:
            self.refuse_head()
        else:
            self.follow()

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= MAX_HEADER_FIELDS:
            self.head_too_large = True
            raise HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.in_body = True
        self.head_bytes = 0
        self.unanswered += 1

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_body = False
        self.head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        if self.head_too_large:
            self.refuse_head()
        else:
            super().send_400_response(msg)

    def on_response_complete(self) -> None:
        self.unanswered -= 1
        super().on_response_complete()
        if not self.transport.is_closing():
            self.follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_clock()
        self.guard.waiting.pop(self, None)
        super().connection_lost(exc)

    def follow(self) -> None:
        """Start the phase's clock when the request enters a new phase; the
        clock is not restarted by each byte, so a trickle does not help. A
        request pipelined behind one the app is answering has no clock: it is
        not read until that answer has gone."""
        phase = ("head" if self.unanswered == 0
                 else "body" if self.unanswered == 1 and self.in_body else "app")
        if phase == self.phase:
            return
        self.phase = phase
        self.stop_clock()
        self.guard.waiting.pop(self, None)
        if phase == "head":
            self.guard.waiting[self] = None
            self.deadline = self.loop.call_later(self.guard.header_timeout, self.drop,
                                                 "api.slow_request_head")
        elif phase == "body":
            self.deadline = self.loop.call_later(self.guard.body_timeout, self.drop,
                                                 "api.slow_request_body")

    def stop_clock(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def refuse_head(self) -> None:
        self.stop_clock()
        self.guard.waiting.pop(self, None)
        log.info("api.request_head_too_large", max_bytes=MAX_HEAD_BYTES,
                 max_fields=MAX_HEADER_FIELDS)
        self.transport.write(HEAD_TOO_LARGE)
        self.transport.close()

    def drop(self, event: str) -> None:
        self.stop_clock()
        self.guard.waiting.pop(self, None)
        if not self.transport.is_closing():
            log.info(event, phase=self.phase)
            self.transport.close()


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (systemd's LimitNOFILE
    sets both); the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return int(soft)


def listen_backlog(open_file_limit: int) -> int:
    """The listening sockets' backlog under this open-file limit."""
    return max(MIN_LISTEN_BACKLOG, min(MAX_LISTEN_BACKLOG, open_file_limit // 4))


def connection_cap(wanted: int, open_file_limit: int) -> int:
    """api.max_connections, lowered to what the open-file limit leaves room for."""
    room = open_file_limit - listen_backlog(open_file_limit) - OTHER_FILES
    if room < MIN_CONNECTIONS:
        raise ConfigError(
            f"the open-file limit ({open_file_limit}) leaves no room for API connections: raise "
            f"it to at least {MIN_LISTEN_BACKLOG + OTHER_FILES + MIN_CONNECTIONS} (LimitNOFILE= "
            "in the systemd unit, ulimit -n in a shell)", setting="api.max_connections")
    if room < wanted:
        log.warning("api.max_connections_lowered", wanted=wanted, max_connections=room,
                    open_file_limit=open_file_limit)
    return min(wanted, room)


def api_server(app: FastAPI, settings: ApiConfig) -> ApiServer:
    open_file_limit = raise_open_file_limit()
    guard = ConnectionGuard(settings.header_timeout, settings.body_timeout,
                            connection_cap(settings.max_connections, open_file_limit))
    protocol = cast("type[asyncio.Protocol]", functools.partial(GuardedProtocol, guard=guard))
    # ws="none": the API has no WebSocket routes, and an upgraded connection
    # would leave the guard.
    return ApiServer(uvicorn.Config(
        app, host=settings.host, port=settings.port, http=protocol, ws="none",
        backlog=listen_backlog(open_file_limit), log_config=None, access_log=False, lifespan="off"))
