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

import re
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from controller.errors import CallConnectError, InvalidNumber
from controller.numbers import normalize_number
from controller.outbound import redact
from controller.outbound_client import AnswerRules, OutboundClient, ask

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


# Only a 200 answers the question; the reason has the client's words (which say
# whether the host was unreachable or refused).
_ANSWERS = AnswerRules(DialWhomFailed, MAX_BODY_BYTES, statuses=(200,))


class DialWhomClient:
    """Asks through ``client``, the live calls' one
    (:func:`~controller.outbound_client.live_calls_client`), which applies
    the [outbound] policy to every request."""

    def __init__(self, default_region: str, client: OutboundClient,
                 timeout: float = 10.0) -> None:
        self.default_region = default_region
        self.client = client
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
        answer = await ask(self.client, _ANSWERS, "GET", url, timeout=self.timeout,
                           headers={"Accept": "text/plain"}, params=params)
        return answer.body.decode("utf-8", errors="replace")
