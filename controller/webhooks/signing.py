"""Standard Webhooks (https://www.standardwebhooks.com/) request headers:
``webhook-id``, ``webhook-timestamp`` and, with a signing secret,
``webhook-signature``, made by the ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from controller.errors import ConfigError
from controller.webhooks.envelope import encode

# Standard Webhooks asks for a key of 24 to 64 bytes; a shorter one can be guessed.
MIN_KEY_BYTES = 24


def _webhook(signing_secret: str) -> Webhook:
    encoded = signing_secret.removeprefix("whsec_")
    # Strict base64: the package's own decoding skips stray characters, so a typo
    # would sign with a different key than the receiver holds.
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        key = b""
    # The secret itself never goes into a message.
    if not key:
        raise ConfigError("webhook.signing_secret must be 'whsec_' followed by base64",
                          field="webhook.signing_secret")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"webhook.signing_secret decodes to {len(key)} bytes; at least {MIN_KEY_BYTES} are "
            f"needed: make one with `python3 -c \"import base64,os; "
            f"print('whsec_' + base64.b64encode(os.urandom(32)).decode())\"`",
            field="webhook.signing_secret")
    return Webhook(key)


class Signer:
    """Makes each request's body and headers; signs them when given a secret
    ("whsec_" + base64 of at least MIN_KEY_BYTES bytes). None: unsigned.
    Anything else unusable, "" included, is a ConfigError here, before any
    webhook is sent."""

    def __init__(self, signing_secret: str | None) -> None:
        self._webhook = None if signing_secret is None else _webhook(signing_secret)

    @property
    def signs(self) -> bool:
        return self._webhook is not None

    def request(self, event_id: str, payload: Mapping[str, Any],
                now: float) -> tuple[bytes, dict[str, str]]:
        """The bytes to POST and their headers, timestamped ``now`` (Unix time)."""
        body = encode(payload)
        timestamp = int(now)
        headers = {"content-type": "application/json", "webhook-id": event_id,
                   "webhook-timestamp": str(timestamp)}
        if self._webhook is not None:
            # The package signs the text's UTF-8 encoding: exactly the bytes sent.
            headers["webhook-signature"] = self._webhook.sign(
                event_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode())
        return body, headers
