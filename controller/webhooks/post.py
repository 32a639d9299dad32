"""One webhook request and what its answer means, for both senders: it goes
through the outbound client (controller.outbound_client), so the [outbound]
policy holds for the address it reaches; the whole exchange is bounded by the
timeout; of the answer only the status, the Retry-After header and at most
:data:`ANSWER_BYTES` of the body are read (the rest is dropped with the
connection); only the URL's scheme, host and path are ever logged or reported
(query strings often carry tokens)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from controller.errors import OutboundRefused
from controller.outbound import redact
from controller.outbound_client import OutboundClient, error_words, read_limited
from controller.webhooks.retry import is_retryable

# Nothing in a webhook's answer body is used; a little is read so a short
# answer leaves its connection fit to reuse.
ANSWER_BYTES = 4 * 1024


@dataclass(frozen=True)
class Answer:
    """What one attempt came to. ``error`` is None when the receiver took it (2xx)."""

    status: int | None
    error: str | None
    retryable: bool = False
    retry_after: str | None = None  # the Retry-After header's value, if any
    refused: bool = False  # the [outbound] policy stopped it before it was sent

    @property
    def delivered(self) -> bool:
        return self.error is None


def describe(exc: BaseException, url: str) -> str:
    # An error may quote the URL, and its query holds tokens.
    text = error_words(exc).replace(url, redact(url))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def post_once(client: OutboundClient, url: str, body: bytes, headers: dict[str, str],
                    timeout: float) -> Answer:
    try:
        async with (asyncio.timeout(timeout),  # the whole exchange, however slowly it trickles
                    client.request("POST", url, content=body, headers=headers) as response):
            await read_limited(response, ANSWER_BYTES)
    except OutboundRefused as exc:  # final: retrying would resolve the same
        return Answer(None, exc.message, refused=True)
    except aiohttp.InvalidURL as exc:  # final too
        return Answer(None, describe(exc, url))
    # OSError: the host could not be resolved; that is retried like a network error.
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        timed_out = isinstance(exc, TimeoutError)
        return Answer(None, f"timed out after {timeout:g} s" if timed_out else describe(exc, url),
                      retryable=True)
    status = response.status
    if 200 <= status < 300:
        return Answer(status, None)
    return Answer(status, f"HTTP {status}", retryable=is_retryable(status),
                  retry_after=response.headers.get("Retry-After"))
