"""The one webhook shape, signer and retry rule, and the daemon and the
command line sending the same shape."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from standardwebhooks import Webhook

from controller.config import Config
from controller.daemon.listener import StoreListener
from controller.daemon.metrics import Metrics
from controller.errors import ConfigError
from controller.outbound import OutboundConfig
from controller.store import DeliveryState
from controller.store.sqlite import SqliteStore
from controller.webhooks.envelope import encode, envelope, new_event_id
from controller.webhooks.outbox import Outbox
from controller.webhooks.retry import Backoff, is_retryable, parse_retry_after
from controller.webhooks.sender import WebhookSender
from controller.webhooks.signing import Signer
from tests.conftest import StartReceiver

SECRET = "whsec_" + base64.b64encode(b"callconnect-test-signing-key-32b").decode()
LOOPBACK_ALLOWED = OutboundConfig(allow_private=True)


def test_the_envelope_is_type_timestamp_and_data() -> None:
    data = {"status": "completed"}
    body = envelope("call.completed", data, 1700000000.5)
    assert body == {"type": "call.completed", "timestamp": 1700000000.5, "data": data}
    assert body["data"] is not data  # the caller's dict is not shared
    assert encode(body) == b'{"type":"call.completed","timestamp":1700000000.5,"data":{"status":"completed"}}'
    event_id = new_event_id()
    assert event_id.startswith("evt_") and len(event_id) == 36 and event_id != new_event_id()


def test_the_signer_signs_the_bytes_it_returns() -> None:
    payload = envelope("call.completed", {"name": "Zoë"}, 1.0)
    body, headers = Signer(SECRET).request("evt_1", payload, 1700000000.9)
    assert headers["webhook-id"] == "evt_1" and headers["webhook-timestamp"] == "1700000000"
    assert headers["content-type"] == "application/json"
    assert body == encode(payload)
    assert "Zoë".encode() in body  # UTF-8 on the wire, and signed as such
    # verify() refuses a timestamp this old, so the signature is compared with the library's own.
    signed_at = datetime.fromtimestamp(1700000000, tz=UTC)
    assert headers["webhook-signature"] == Webhook(SECRET).sign("evt_1", signed_at, body.decode())
    assert Signer(SECRET).signs and not Signer(None).signs
    _, unsigned = Signer(None).request("evt_1", payload, 1.0)
    assert "webhook-signature" not in unsigned


@pytest.mark.parametrize("secret", ["whsec_c2VjcmV0!x", "whsec_", "", "whsec_!!!!"])
def test_an_unusable_secret_is_a_config_error_that_does_not_show_it(secret: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Signer(secret)
    assert caught.value.details["field"] == "webhook.signing_secret"
    assert "c2VjcmV0" not in caught.value.message


@pytest.mark.parametrize(("status", "retryable"), [
    (200, False), (301, False), (400, False), (404, False), (410, False),
    (408, True), (429, True), (500, True), (503, True)])
def test_which_answers_are_retried(status: int, retryable: bool) -> None:
    assert is_retryable(status) is retryable


def test_the_backoff_honours_retry_after_within_its_bounds_else_jitters() -> None:
    backoff = Backoff(base_delay=5.0, max_delay=3600.0, min_delay=1.0)
    assert backoff.delay(1, "120") == 120.0
    assert backoff.delay(1, "99999") == 3600.0
    assert backoff.delay(1, "0") == 1.0
    assert parse_retry_after("soon", 0.0) is None
    random.seed(7)
    for attempts in (1, 2, 3, 10, 10_000):
        delay = backoff.delay(attempts, "soon")  # unparseable: the backoff decides
        assert 1.0 <= delay <= min(3600.0, 5.0 * 2.0 ** min(attempts - 1, 32))


def fake_call(url: str) -> Any:
    """As much of an ActiveCall as the listener reads to make a delivery."""
    return SimpleNamespace(call_id="call-1", request=SimpleNamespace(webhook_url=url))


async def test_the_daemon_and_the_command_line_send_one_shape_both_signed(
        tmp_path: Path, webhook_receiver: StartReceiver) -> None:
    receiver = await webhook_receiver()
    data = {"call_uuid": "call-1", "status": "completed"}

    # The daemon: the listener makes the delivery, the outbox sends it.
    store = SqliteStore(tmp_path / "db.sqlite3")
    await store.open()
    outbox = Outbox(store, SECRET, outbound=LOOPBACK_ALLOWED, timeout=2)
    listener = StoreListener(Config(), store, outbox, Metrics("asterisk"))
    [delivery] = listener._deliveries(fake_call(receiver.url), "call.completed", data)
    try:
        sent = await outbox._send(delivery)
    finally:
        await outbox.stop()
        await store.close()
    assert sent.state is DeliveryState.DELIVERED

    # The command line: the one-shot sender.
    sender = WebhookSender(LOOPBACK_ALLOWED, SECRET, timeout=2)
    cli = await sender.deliver(receiver.url, "call.completed", data)
    await sender.close()
    assert cli.delivered

    daemon_body, cli_body = receiver.bodies
    assert receiver.webhook_ids == [delivery.event_id, cli.event_id]
    assert set(daemon_body) == set(cli_body) == {"type", "timestamp", "data"}
    assert daemon_body["data"] == cli_body["data"] == data
    assert type(daemon_body["timestamp"]) is type(cli_body["timestamp"]) is float
    for raw, headers in zip(receiver.raw_bodies, receiver.headers, strict=True):
        assert Webhook(SECRET).verify(raw, headers) == json.loads(raw)
