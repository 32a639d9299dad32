"""What every request passes before the app sees it: the bearer token first,
before a byte of the body is read, then the body's size. FastAPI reads and
parses a body before it runs any dependency, so neither check can live in a
dependency: a 100 MB body, or a JSON syntax error, would cost memory or get
400 before a request without a token got its 401."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

import structlog
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.api.errors import UNAUTHORIZED, error, failure
from controller.errors import BodyTooLarge

log = structlog.get_logger(__name__)


class RequestGuard:
    """ASGI middleware: ``public(path)`` says which paths need no token; a
    body is read whole (it is small) and handed on once it is complete."""

    def __init__(self, app: ASGIApp, *, tokens: Callable[[], Sequence[str]],
                 public: Callable[[str], bool], max_body_bytes: int) -> None:
        self.app = app
        self.tokens = tokens
        self.public = public
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not self.public(scope["path"]) and not self.authorized(headers.get("authorization", "")):
            response = error(UNAUTHORIZED, "a valid bearer token is required")
            response.headers["WWW-Authenticate"] = "Bearer"
            await self.refuse(response, headers, scope, receive, send)
            return
        announced = headers.get("content-length", "")
        if announced.isdigit() and int(announced) > self.max_body_bytes:
            await self.too_large(headers, scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:  # chunked, or more than announced
                await self.too_large(headers, scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # later calls wait for the disconnect, as usual
            delivered = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    def authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        presented = token.strip().encode()
        return any(hmac.compare_digest(presented, known.encode()) for known in self.tokens())

    async def too_large(self, headers: Headers, scope: Scope, receive: Receive, send: Send) -> None:
        refused = BodyTooLarge(self.max_body_bytes)
        log.info("api.refused", path=scope["path"], error_id=refused.error_id)
        await self.refuse(failure(refused), headers, scope, receive, send)

    async def refuse(self, response: Response, headers: Headers, scope: Scope, receive: Receive,
                     send: Send) -> None:
        # A body left unread is not read at all: the connection closes after
        # the answer instead of waiting for it.
        if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
            response.headers["Connection"] = "close"
        await response(scope, receive, send)
