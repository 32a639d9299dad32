"""Signed recording links: a URL that fetches one call's recording without an
API token, until it expires. The completion webhook carries one, so a CRM can
fetch the recording with nothing but the link.

A link is ``/v1/recordings/{call_id}?expires=UNIX&signature=SIG``: SIG is
HMAC-SHA256 over the call id and the expiry, base64url without padding. Its
key is derived from the webhook signing secret under a label of its own, so a
link's signature can never pass for a webhook's, nor the reverse; rotating the
secret ends every link given out. A daemon without a signing secret
(``webhook.unsigned``) draws a random key at start: its links end when it
restarts. Neither key is ever logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from enum import StrEnum
from urllib.parse import quote, urlencode

import structlog

log = structlog.get_logger(__name__)

LINK_PATH = "/v1/recordings/"
# Domain separation: this key signs recording links and nothing else.
KEY_LABEL = b"callconnect/recording-link/v1"
# base64url of a SHA-256 digest, without padding, is 43 characters.
SIGNATURE_CHARS = 43


class LinkCheck(StrEnum):
    VALID = "valid"
    INVALID = "invalid"  # not a signature of this call and expiry: forged or altered
    EXPIRED = "expired"  # signed, but its time is up


class RecordingLinks:
    """Makes and checks the links of one daemon (one key)."""

    def __init__(self, key: bytes, base_url: str, lifetime_seconds: float) -> None:
        self._key = key
        self.base_url = base_url.rstrip("/")
        self.lifetime_seconds = lifetime_seconds

    def __repr__(self) -> str:  # never the key
        return f"RecordingLinks(base_url={self.base_url!r}, lifetime={self.lifetime_seconds:g}s)"

    @classmethod
    def for_daemon(cls, signing_secret: str | None, base_url: str,
                   lifetime_seconds: float) -> RecordingLinks:
        """The key from the webhook signing secret; a random one without it."""
        if signing_secret is None:
            log.warning("recording_links.ephemeral_key",
                        reason="webhook.signing_secret is not set, so recording links are signed "
                               "with a key drawn at start and stop working when the daemon "
                               "restarts; set webhook.signing_secret to keep them")
            return cls(secrets.token_bytes(32), base_url, lifetime_seconds)
        key = hmac.new(signing_secret.encode(), KEY_LABEL, hashlib.sha256).digest()
        return cls(key, base_url, lifetime_seconds)

    def signature(self, call_id: str, expires: int) -> str:
        digest = hmac.new(self._key, f"{call_id}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def link(self, call_id: str, now: float) -> tuple[str, int]:
        """The link to the call's recording and when it expires (Unix time)."""
        expires = math.ceil(now + self.lifetime_seconds)
        query = urlencode({"expires": expires, "signature": self.signature(call_id, expires)})
        return f"{self.base_url}{LINK_PATH}{quote(call_id, safe='')}?{query}", expires

    def check(self, call_id: str, expires: int, signature: str, now: float) -> LinkCheck:
        """The signature first, in constant time: a forged link learns nothing,
        not even whether it had expired."""
        expected = self.signature(call_id, expires).encode()
        if not hmac.compare_digest(expected, signature.encode()):
            return LinkCheck.INVALID
        return LinkCheck.VALID if now < expires else LinkCheck.EXPIRED
