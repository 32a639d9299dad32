"""Dial whom: ask a URL which numbers to ring.

The URL gets an HTTP GET with the call's details as query parameters (the
names hosted products use) and answers ``text/plain`` with comma-separated
E.164 numbers. A non-200 answer, or none within the timeout, sends the same
question to the fallback URL, and so does a URL the [outbound] policy
refuses, or whose host resolves to a non-public address it does not allow
(controller.outbound, applied by controller.outbound_client to the address
connected to), and an answer over :data:`MAX_BODY_BYTES` or compressed (only
its first bytes are read). Entries that are not valid numbers are skipped and
logged; what remains is rung.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import structlog

from controller.errors import CallConnectError, InvalidNumber, OutboundRefused
from controller.numbers import normalize_number
from controller.outbound import redact
from controller.outbound_client import outbound_client, read_limited

if TYPE_CHECKING:
    from controller.outbound import OutboundConfig

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 16 * 1024
MAX_NUMBERS = 50
_SEPARATORS = re.compile(r"[,\s]+")


class DialWhomFailed(CallConnectError):
    """Neither URL gave an answer to use."""

    error_id = "dial-whom-failed"


@dataclass(frozen=True)
class DialWhomAnswer:
    numbers: list[str]
    skipped: list[str]
    url: str  # which URL answered (redacted)


def parse_answer(body: str, default_region: str) -> tuple[list[str], list[str]]:
    """(numbers in E.164, entries skipped); each number once, in order."""
    numbers: list[str] = []
    skipped: list[str] = []
    for entry in _SEPARATORS.split(body.strip()):
        if not entry:
            continue
        try:
            number = normalize_number(entry, default_region, "dial-whom number")
        except InvalidNumber:
            skipped.append(entry[:40])
            continue
        if number not in numbers:
            numbers.append(number)
    return numbers[:MAX_NUMBERS], skipped


class DialWhomClient:
    def __init__(self, default_region: str, outbound: OutboundConfig,
                 timeout: float = 10.0) -> None:
        self.default_region = default_region
        self.outbound = outbound
        self.timeout = timeout

    async def ask(self, url: str, fallback_url: str | None,
                  params: Mapping[str, str]) -> DialWhomAnswer:
        reasons = []
        for candidate in (url, fallback_url):
            if candidate is None:
                continue
            try:
                body = await self._get(candidate, params)
            except DialWhomFailed as exc:
                log.warning("dial_whom.failed", url=redact(candidate), error=exc.message)
                reasons.append(exc.message)
                continue
            numbers, skipped = parse_answer(body, self.default_region)
            if skipped:
                log.warning("dial_whom.skipped_entries", url=redact(candidate), skipped=skipped)
            log.info("dial_whom.answer", url=redact(candidate), numbers=len(numbers))
            return DialWhomAnswer(numbers, skipped, redact(candidate))
        raise DialWhomFailed("; ".join(reasons))

    async def _get(self, url: str, params: Mapping[str, str]) -> str:
        try:
            # One deadline for the whole answer, however slowly it trickles in.
            async with (
                asyncio.timeout(self.timeout),
                outbound_client(self.outbound, self.timeout, max_connections=1) as client,
                # Merged with the URL's own query (a token, say): httpx's params
                # would replace it.
                client.stream("GET", httpx.URL(url).copy_merge_params(dict(params)),
                              headers={"Accept": "text/plain"}) as response,
            ):
                if response.status_code != 200:
                    raise DialWhomFailed(f"{redact(url)} answered HTTP {response.status_code}")
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                if encoding != "identity":
                    raise DialWhomFailed(f"{redact(url)} answered with Content-Encoding {encoding[:40]!r}; "
                                         "only uncompressed answers are read")
                body = await read_limited(response, MAX_BODY_BYTES)
                if body is None:
                    raise DialWhomFailed(f"{redact(url)} answered more than {MAX_BODY_BYTES} bytes")
        except OutboundRefused as exc:
            raise DialWhomFailed(exc.message) from None
        except (TimeoutError, httpx.TimeoutException):
            raise DialWhomFailed(f"{redact(url)} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise DialWhomFailed(f"{redact(url)} could not be asked: {exc}") from None
        return body.decode("utf-8", errors="replace")
