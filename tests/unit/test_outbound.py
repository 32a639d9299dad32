"""The outbound URL policy (controller.outbound): which webhook and dial-whom
URLs are refused when given, and which hosts are refused when resolved just
before a request (the daemon's outbox, the command line's sender, dial whom)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controller.errors import InvalidField, OutboundRefused
from controller.outbound import OutboundConfig, check_before_send, check_url, redact, resolve_checked
from controller.routing.dial_whom import DialWhomClient, DialWhomFailed
from controller.store import DeliveryState, WebhookDelivery
from controller.store.sqlite import SqliteStore
from controller.webhooks.outbox import Outbox
from controller.webhooks.sender import WebhookSender
from tests.conftest import LiveClients

DEFAULT = OutboundConfig()

NON_PUBLIC = [
    "http://127.0.0.1/hook", "http://127.1/hook", "http://2130706433/hook", "http://0x7f.1/hook",
    "http://0177.0.0.1/hook", "http://0x7f000001/hook", "http://127.0.0.1./hook",
    "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook", "http://[::ffff:7f00:1]/hook",
    "http://[64:ff9b::7f00:1]/hook", "http://[2002:7f00:1::]/hook", "http://[fe80::1]/hook",
    "http://10.0.0.5/hook", "http://172.16.0.1/hook", "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data", "http://100.64.0.1/hook", "http://0.0.0.0/hook",
    "http://0/hook", "http://224.0.0.1/hook", "http://240.0.0.1/hook",
    "http://255.255.255.255/hook", "http://[fc00::1]/hook", "http://[ff02::1]/hook",
    "http://[::]/hook", "https://user:pw@127.0.0.1:8443/hook?token=s3cret",
]


@pytest.mark.parametrize("url", NON_PUBLIC)
def test_literal_non_public_addresses_are_refused_in_every_spelling(url: str) -> None:
    with pytest.raises(InvalidField) as refused:
        check_url(url, DEFAULT, "webhook_url")
    assert refused.value.details["field"] == "webhook_url"
    assert "non-public address" in refused.value.message
    assert "outbound.allow_private" in refused.value.message
    assert "s3cret" not in refused.value.message and "pw@" not in refused.value.message
    # Labs may allow them.
    assert check_url(url, OutboundConfig(allow_private=True), "webhook_url") == url


@pytest.mark.parametrize("url", ["http://localhost/hook", "http://LOCALHOST:8080/",
                                 "http://api.localhost/", "http://localhost./"])
def test_localhost_is_refused_unless_private_is_allowed(url: str) -> None:
    with pytest.raises(InvalidField, match=r"this machine; that needs outbound\.allow_private"):
        check_url(url, DEFAULT, "dial_whom_fallback_url")
    check_url(url, OutboundConfig(allow_private=True), "dial_whom_fallback_url")


@pytest.mark.parametrize(("url", "rule"), [
    ("ftp://hooks.example.com/x", "http(s) URL with a host"),
    ("javascript:alert(1)", "http(s) URL with a host"),
    ("http:///nohost", "http(s) URL with a host"),
    ("https://hooks.example.com/a\r\nX-Injected: 1", "whitespace or control characters"),
    ("https://hooks.example.com/a b", "whitespace or control characters"),
    ("https://hooks.example.com/\x00", "whitespace or control characters"),
    ("https://hooks.example.com:99999/", "port must be a number"),
    ("https://hooks.example.com:http/", "port must be a number"),
    ("https://" + "127.0.0.1".translate({ord(d): 0xFF10 + int(d) for d in "0123456789"}) + "/",
     "ASCII host name"),
    ("https://127.0.0.%31/", "ASCII host name"),
    ("https://ⓛocalhost/", "ASCII host name"),
    ("https://[::1%25eth0]/", "zone ids are refused"),
    ("https://1.2.3.4.5/", "not an IPv4 address"),
    ("https://256.1.1.1/", "not an IPv4 address"),
    ("https://09.1.1.1/", "not an IPv4 address"),
])
def test_malformed_urls_are_refused_naming_the_rule(url: str, rule: str) -> None:
    for policy in (DEFAULT, OutboundConfig(allow_private=True)):
        with pytest.raises(InvalidField) as refused:
            check_url(url, policy, "leg_b[1]")
        assert refused.value.details["field"] == "leg_b[1]"
        assert rule in refused.value.message


def test_public_hosts_pass() -> None:
    for url in ["https://hooks.example.com/callconnect?token=x", "http://8.8.8.8/",
                "https://[2001:4860:4860::8888]:8443/x", "http://1e100.net/"]:
        assert check_url(url, DEFAULT, "webhook_url") == url


def test_the_allow_list_takes_exact_names_and_subdomain_wildcards() -> None:
    policy = OutboundConfig(allowed_hosts=["crm.example.com", "*.hooks.example.net"])
    for url in ["https://crm.example.com/x", "https://CRM.example.com./x",
                "https://a.hooks.example.net/", "https://a.b.hooks.example.net/"]:
        check_url(url, policy, "webhook_url")
    for url in ["https://example.com/", "https://crm.example.com.evil.io/",
                "https://hooks.example.net/", "https://evilhooks.example.net/",
                "https://crm.example.com@evil.io/"]:
        with pytest.raises(InvalidField, match=r"is not in outbound\.allowed_hosts"):
            check_url(url, policy, "webhook_url")


def test_redact_drops_userinfo_query_and_a_bad_port() -> None:
    assert redact("https://user:pw@hooks.example.com:8443/a/b?token=x#f") == \
        "https://hooks.example.com:8443/a/b"
    assert redact("https://hooks.example.com:99999/a?token=x") == "https://hooks.example.com/a"


# ---------------------------------------------------------------- resolved just before sending

@pytest.fixture
async def resolver(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, str]]:
    """Names resolve to the addresses the test gives, through the running
    loop's getaddrinfo (which the policy's resolver, the outbound client's only one, uses)."""
    answers: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            family = socket.AF_INET6 if ":" in answers[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (answers[host], port or 80))]
        return await real(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    yield answers


async def test_a_name_that_resolves_to_a_private_address_is_refused(
        resolver: dict[str, str]) -> None:
    resolver["rebind.example.com"] = "127.0.0.1"
    resolver["v6.example.com"] = "::ffff:10.1.2.3"
    resolver["public.example.com"] = "93.184.216.34"
    for host, address in [("rebind.example.com", "127.0.0.1"),
                          ("v6.example.com", "::ffff:a01:203")]:
        url = f"https://{host}/hook?token=s3cret"
        check_url(url, DEFAULT, "webhook_url")  # looks public when given
        check_before_send(url, DEFAULT)  # and when it is sent, until it is resolved
        with pytest.raises(OutboundRefused) as refused:
            await resolve_checked(host, 443, DEFAULT, 2.0)
        assert f"resolves to a non-public address ({address})" in refused.value.message
        assert "outbound.allow_private" in refused.value.message
        assert [str(a) for a in await resolve_checked(host, 443, OutboundConfig(allow_private=True),
                                                      2.0)] == [address]
    assert [str(a) for a in await resolve_checked("public.example.com", 443, DEFAULT, 2.0)] == \
        ["93.184.216.34"]


def test_the_allow_list_is_checked_again_before_sending() -> None:
    with pytest.raises(OutboundRefused, match=r"outbound\.allowed_hosts"):
        check_before_send("http://8.8.8.8/hook", OutboundConfig(allowed_hosts=["x.io"]))


async def test_the_command_lines_sender_does_not_send_to_a_private_address(
        resolver: dict[str, str]) -> None:
    resolver["rebind.example.com"] = "127.0.0.1"
    sender = WebhookSender(DEFAULT, timeout=2, attempts=3, backoff=0.01)
    try:
        delivery = await sender.deliver("http://rebind.example.com:9/hook", "call.completed", {})
    finally:
        await sender.close()
    assert not delivery.delivered and delivery.attempts == 1 and delivery.status_code is None
    assert delivery.error is not None and "non-public address (127.0.0.1)" in delivery.error


async def test_the_outbox_fails_a_delivery_to_a_private_address_for_good(
        resolver: dict[str, str], tmp_path: Path) -> None:
    resolver["rebind.example.com"] = "10.0.0.7"
    store = SqliteStore(tmp_path / "db.sqlite3")
    await store.open()
    outbox = Outbox(store, None, timeout=2, outbound=DEFAULT)
    try:
        delivery = WebhookDelivery(event_id="evt_1", call_id="c1",
                                   url="http://rebind.example.com/hook?token=s3cret",
                                   event_type="call.completed", payload={"type": "call.completed"},
                                   created_at=0.0, next_attempt_at=0.0)
        outcome = await outbox._send(delivery)
    finally:
        await outbox.stop()
        await store.close()
    assert outcome.state is DeliveryState.FAILED, "final: not retried"
    assert outcome.last_status_code is None
    assert outcome.last_error is not None and "non-public address (10.0.0.7)" in outcome.last_error
    assert "s3cret" not in outcome.last_error


async def test_dial_whom_treats_a_refused_url_as_a_failed_ask_and_asks_the_fallback(
        resolver: dict[str, str], live_clients: LiveClients) -> None:
    resolver["whom.example.com"] = "192.168.0.10"
    client = DialWhomClient("ZA", live_clients(DEFAULT), timeout=2)
    with pytest.raises(DialWhomFailed) as failed:
        await client.ask("http://whom.example.com/who", "http://localhost:9/who", {"CallSid": "c1"})
    primary, fallback = failed.value.message.split("; http://")
    assert "whom.example.com" in primary and "non-public address (192.168.0.10)" in primary
    assert fallback.startswith("localhost") and "outbound.allow_private" in fallback
