"""Webhook delivery against a real HTTP server on loopback."""

from __future__ import annotations

import pytest

from controller.config import OutboundConfig
from controller.errors import InvalidField
from controller.outbound import check_url, redact
from controller.webhooks import WebhookSender
from tests.conftest import StartReceiver

# The receivers here run on 127.0.0.1.
LOOPBACK_ALLOWED = OutboundConfig(allow_private=True)


async def test_delivered_once_with_the_result(webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([200])
    sender = WebhookSender(LOOPBACK_ALLOWED, timeout=2, attempts=3, backoff=0.01)
    delivery = await sender.deliver(receiver.url, "call.completed", {"status": "completed"})
    await sender.close()
    assert delivery.delivered and delivery.attempts == 1 and delivery.status_code == 200
    [body] = receiver.bodies
    [header_id] = receiver.webhook_ids
    assert body == {"id": delivery.event_id, "type": "call.completed",
                    "data": {"status": "completed"}}
    assert header_id == delivery.event_id


async def test_retried_on_5xx_and_429_with_the_same_event_id(webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver([503, 429, 200])
    sender = WebhookSender(LOOPBACK_ALLOWED, timeout=2, attempts=3, backoff=0.01)
    delivery = await sender.deliver(receiver.url, "call.completed", {})
    await sender.close()
    assert delivery.delivered and delivery.attempts == 3
    assert {body["id"] for body in receiver.bodies} == {delivery.event_id}


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
