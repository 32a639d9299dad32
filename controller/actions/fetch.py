"""Ask a URL for a live call's next actions: a gather's ``action_url``, a
redirect's ``url``, a number's ``incoming_url``.

The call's state is POSTed as a webhook is (the same envelope, signed with
``webhook.signing_secret``), through the outbound client, so the [outbound]
policy holds for the address reached. The whole exchange is bounded by the
timeout and the answer by :data:`MAX_ANSWER_BYTES`. A 2xx answer with JSON
``{"actions": [...]}`` gives the actions (checked by the one action spec); a
204 or an empty 2xx body gives none (None); anything else is
:class:`FetchFailed` with a reason a user can act on.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from controller.actions.spec import Action, parse_answer
from controller.errors import CallConnectError, InvalidRequest, OutboundRefused
from controller.jsonio import loads
from controller.outbound import OutboundConfig, redact
from controller.outbound_client import outbound_client, read_limited
from controller.webhooks.envelope import envelope, new_event_id
from controller.webhooks.signing import Signer

MAX_ANSWER_BYTES = 64 * 1024
# The event type of the POST, by what asked.
EVENT_TYPES = {"gather": "call.gathered", "redirect": "call.redirect", "incoming": "call.incoming"}


class FetchFailed(CallConnectError):
    """The URL gave no actions to use."""

    error_id = "actions-fetch-failed"


class ActionFetcher:
    def __init__(self, outbound: OutboundConfig, signing_secret: str | None,
                 timeout: float) -> None:
        self.outbound = outbound
        self.signer = Signer(signing_secret)
        self.timeout = timeout

    async def fetch(self, url: str, kind: str, payload: dict[str, Any],
                    timeout: float | None = None) -> list[Action] | None:
        """The actions ``url`` answers (None: it answered none, 204 or an
        empty body); FetchFailed says why there are none to use."""
        limit = self.timeout if timeout is None else timeout
        where = redact(url)
        body, headers = self.signer.request(
            new_event_id(), envelope(EVENT_TYPES.get(kind, f"call.{kind}"), payload, time.time()),
            time.time())
        headers["accept"] = "application/json"
        try:
            async with (
                asyncio.timeout(limit),
                outbound_client(self.outbound, limit, max_connections=1) as client,
                client.stream("POST", url, content=body, headers=headers) as response,
            ):
                status = response.status_code
                if not 200 <= status < 300:
                    raise FetchFailed(f"{where} answered HTTP {status}; it must answer 200 with "
                                      "{\"actions\": [...]}")
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                if encoding != "identity":
                    raise FetchFailed(f"{where} answered with Content-Encoding {encoding[:40]!r}; "
                                      "only uncompressed answers are read")
                answer = await read_limited(response, MAX_ANSWER_BYTES)
        except OutboundRefused as exc:
            raise FetchFailed(exc.message) from None
        except (TimeoutError, httpx.TimeoutException):
            raise FetchFailed(f"{where} did not answer within {limit:g} s") from None
        except (httpx.HTTPError, OSError) as exc:
            raise FetchFailed(f"{where} could not be asked: {type(exc).__name__}") from None
        if answer is None:
            raise FetchFailed(f"{where} answered more than {MAX_ANSWER_BYTES} bytes")
        if status == 204 or not answer.strip():
            return None
        return _actions_of(answer, where)


def _actions_of(answer: bytes, where: str) -> list[Action]:
    try:
        data = loads(answer)
    except ValueError:
        raise FetchFailed(f"{where} answered a body that is not JSON; it must answer "
                          "{\"actions\": [...]}") from None
    try:
        return parse_answer(data)
    except InvalidRequest as exc:
        raise FetchFailed(f"{where} answered actions that break a rule: {exc.message}") from None
