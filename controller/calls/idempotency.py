"""Idempotency keys, as Stripe has them: a key belongs to the API token that
sent it and is bound to the request it came with. The same key, token and
body replay the first call; the same key from another token is another key;
the same key and token with another body are refused (422
``idempotency-key-reused``), since replaying would answer another request.

Only hashes are kept: of the token (the scope) and of the canonical request
body (its fields as sent, as sorted compact JSON, so key order and spacing
do not matter)."""

from __future__ import annotations

import hashlib
import json

from controller.calls.decision import Refused, Replayed
from controller.calls.request import CallRequest
from controller.errors import IdempotencyKeyReused
from controller.store import IdempotencyKey, StoredCall

_SCOPE_DOMAIN = b"callconnect idempotency scope\0"


def bind_key(key: str, token: str, request: CallRequest) -> IdempotencyKey:
    """The key as ``token`` sent it with ``request``."""
    body = json.dumps(request.model_dump(mode="json", exclude_unset=True), sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    return IdempotencyKey(key, hashlib.sha256(_SCOPE_DOMAIN + token.encode()).hexdigest(),
                          hashlib.sha256(body.encode()).hexdigest())


def replay_of(existing: StoredCall, key: IdempotencyKey) -> Replayed | Refused:
    """The answer to a request whose key ``existing`` was stored under: a
    replay, unless it came with another body. A call stored before keys were
    bound to their body has no hash to compare, and replays."""
    first = existing.idempotency_key
    if first is not None and first.request_hash not in (None, key.request_hash):
        return Refused(IdempotencyKeyReused(
            "this Idempotency-Key was already used with a different request body "
            f"(call {existing.call_id}); send a new key for a new request, or the same body to "
            "get the first call again", field="Idempotency-Key", call_id=existing.call_id))
    return Replayed(existing)
