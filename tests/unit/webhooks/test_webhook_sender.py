"""The command line's one-shot webhook sender, against a real HTTP server on loopback."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks import Webhook

from controller.errors import ConfigError, InvalidField
from controller.outbound import OutboundConfig, check_url, redact
from controller.webhooks.sender import WebhookSender
from tests.conftest import StartReceiver

# The receivers here run on 127.0.0.1.
LOOPBACK_ALLOWED = OutboundConfig(allow_private=True)
SECRET = "whsec_" + base64.b64encode(b"callconnect-test-signing-key-32b").decode()


async def test_delivered_once_with_the_result(webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([200])
    sender = WebhookSender(LOOPBACK_ALLOWED, timeout=2, attempts=3, backoff=0.01)
    delivery = await sender.deliver(receiver.url, "call.completed", {"status": "completed"})
    await sender.close()
    assert delivery.delivered and delivery.attempts == 1 and delivery.status_code == 200
    [body] = receiver.bodies
    [header_id] = receiver.webhook_ids
    assert body == {"type": "call.completed", "timestamp": pytest.approx(time.time(), abs=5),
                    "data": {"status": "completed"}}
    assert header_id == delivery.event_id


async def test_retried_on_5xx_and_429_with_the_same_event_id(webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([503, 429, 200])
    sender = WebhookSender(LOOPBACK_ALLOWED, timeout=2, attempts=3, backoff=0.01)
    delivery = await sender.deliver(receiver.url, "call.completed", {})
    await sender.close()
    assert delivery.delivered and delivery.attempts == 3
    assert receiver.webhook_ids == [delivery.event_id] * 3


async def test_a_4xx_is_final(webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([404, 200])
    sender = WebhookSender(LOOPBACK_ALLOWED, timeout=2, attempts=3, backoff=0.01)
    delivery = await sender.deliver(receiver.url, "call.completed", {})
    await sender.close()
    assert not delivery.delivered and delivery.attempts == 1 and delivery.error == "HTTP 404"
    assert len(receiver.bodies) == 1


async def test_unreachable_receiver_fails_with_a_reason() -> None:
    sender = WebhookSender(LOOPBACK_ALLOWED, timeout=1, attempts=2, backoff=0.01)
    delivery = await sender.deliver("http://127.0.0.1:9/hook", "call.completed", {})
    await sender.close()
    assert not delivery.delivered and delivery.attempts == 2
    assert delivery.error and "Connect" in delivery.error


def test_urls_are_checked_and_redacted() -> None:
    assert redact("https://user:pw@hooks.example.com:8443/a/b?token=x") == \
        "https://hooks.example.com:8443/a/b"
    for bad in ["ftp://x/y", "not a url", "http:///nohost", "http://a/b\r\nX: y"]:
        with pytest.raises(InvalidField):
            check_url(bad, OutboundConfig(), "webhook_url")


async def test_signed_when_a_secret_is_configured_and_verifies_as_the_readme_shows(
        webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([503, 200])
    sender = WebhookSender(LOOPBACK_ALLOWED, SECRET, timeout=2, attempts=3, backoff=0.01)
    delivery = await sender.deliver(receiver.url, "call.completed", {"status": "completed"})
    await sender.close()
    assert delivery.delivered and delivery.attempts == 2
    for raw, headers in zip(receiver.raw_bodies, receiver.headers, strict=True):
        assert headers["webhook-id"] == delivery.event_id
        assert Webhook(SECRET).verify(raw, headers) == receiver.bodies[0]


async def test_unsigned_without_a_secret(webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([200])
    sender = WebhookSender(LOOPBACK_ALLOWED, None, timeout=2)
    await sender.deliver(receiver.url, "call.completed", {})
    await sender.close()
    [headers] = receiver.headers
    assert "webhook-signature" not in headers and headers["webhook-timestamp"].isdigit()


@pytest.mark.parametrize("secret", ["whsec_c2VjcmV0!x", "whsec_", ""])
def test_an_unusable_signing_secret_is_a_config_error(secret: str) -> None:
    with pytest.raises(ConfigError) as caught:
        WebhookSender(LOOPBACK_ALLOWED, secret)
    assert "c2VjcmV0" not in caught.value.message


async def test_retry_after_is_honoured_up_to_max_delay(webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([429], retry_after="3600")
    sender = WebhookSender(LOOPBACK_ALLOWED, timeout=2, attempts=2, backoff=0.01, max_delay=0.05)
    started = time.monotonic()
    delivery = await sender.deliver(receiver.url, "call.completed", {})
    await sender.close()
    assert delivery.delivered and delivery.attempts == 2
    assert time.monotonic() - started < 2
