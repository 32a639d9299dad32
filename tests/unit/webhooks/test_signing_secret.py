"""What a webhook signing secret must be: Standard Webhooks' 24 bytes or more,
and the daemon's rule that webhooks go unsigned only when asked."""

from __future__ import annotations

import base64

import pytest

from controller.config import WebhookConfig
from controller.errors import ConfigError
from controller.webhooks.signing import MIN_KEY_BYTES, Signer


def secret(size: int) -> str:
    return "whsec_" + base64.b64encode(bytes(range(1, size + 1))).decode()


@pytest.mark.parametrize("size", [1, 16, MIN_KEY_BYTES - 1])
def test_a_short_secret_is_a_config_error_that_does_not_show_it(size: int) -> None:
    with pytest.raises(ConfigError) as caught:
        Signer(secret(size))
    assert caught.value.details["field"] == "webhook.signing_secret"
    assert f"decodes to {size} bytes; at least {MIN_KEY_BYTES}" in caught.value.message
    assert secret(size).removeprefix("whsec_") not in caught.value.message


@pytest.mark.parametrize("size", [MIN_KEY_BYTES, 32, 64])
def test_a_secret_of_24_bytes_or_more_signs(size: int) -> None:
    assert Signer(secret(size)).signs


def test_the_daemon_needs_a_secret_unless_unsigned_is_asked_for() -> None:
    with pytest.raises(ConfigError) as caught:
        WebhookConfig().daemon_signing_secret()
    assert caught.value.details["setting"] == "webhook.signing_secret"
    assert "webhook.unsigned = true" in caught.value.message
    assert WebhookConfig(unsigned=True).daemon_signing_secret() is None
    # A secret, when set, is used even with unsigned = true.
    assert WebhookConfig(signing_secret=secret(32), unsigned=True).daemon_signing_secret() \
        == secret(32)
