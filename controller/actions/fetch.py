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

import time
from typing import Any

from controller.actions.spec import Action, parse_answer
from controller.errors import CallConnectError, InvalidRequest
from controller.jsonio import loads
from controller.outbound import redact
from controller.outbound_client import AnswerRules, OutboundClient, ask
from controller.webhooks.envelope import envelope, new_event_id
from controller.webhooks.signing import Signer

MAX_ANSWER_BYTES = 64 * 1024
# The event type of the POST, by what asked.
EVENT_TYPES = {"gather": "call.gathered", "redirect": "call.redirect", "incoming": "call.incoming"}


class FetchFailed(CallConnectError):
    """The URL gave no actions to use."""

    error_id = "actions-fetch-failed"


# Any 2xx; the reason names the error alone (it may reach the caller's webhook).
_ANSWERS = AnswerRules(FetchFailed, MAX_ANSWER_BYTES,
                       status_hint="; it must answer 200 with {\"actions\": [...]}",
                       error_words=False)


class ActionFetcher:
    """Asks through ``client``, the live calls' one
    (:func:`~controller.outbound_client.live_calls_client`), which applies
    the [outbound] policy to every request."""

    def __init__(self, client: OutboundClient, signing_secret: str | None,
                 timeout: float) -> None:
        self.client = client
        self.signer = Signer(signing_secret)
        self.timeout = timeout

    async def fetch(self, url: str, kind: str, payload: dict[str, Any],
                    timeout: float | None = None) -> list[Action] | None:
        """The actions ``url`` answers (None: it answered none, 204 or an
        empty body); FetchFailed says why there are none to use."""
        limit = self.timeout if timeout is None else timeout
        body, headers = self.signer.request(
            new_event_id(), envelope(EVENT_TYPES.get(kind, f"call.{kind}"), payload, time.time()),
            time.time())
        headers["accept"] = "application/json"
        status, answer = await ask(self.client, _ANSWERS, "POST", url, timeout=limit,
                                   headers=headers, content=body)
        if status == 204 or not answer.strip():
            return None
        return _actions_of(answer, redact(url))


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
