"""The destination policy ([destinations]): number prefixes, premium-rate
numbers, SIP hosts and switch endpoints, refused at request time before
anything is dialed and skipped by the router when they come up later."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web

from controller.calls.request import CallRequest, make_request
from controller.calls.service import CallService
from controller.compliance.destinations import DestinationPolicy, DestinationsConfig
from controller.compliance.guard import Compliance
from controller.config import ComplianceConfig, Config, load_config
from controller.core.events import RouteExhausted, TargetsChosen
from controller.core.outcomes import CallStatus
from controller.errors import ConfigError, DestinationRefused
from controller.routing.router import Router
from controller.routing.spec import RouteSpec, Strategy
from controller.store.sqlite import SqliteStore
from controller.tts import WhisperRenderer
from tests.conftest import LiveClients, Serve
from tests.unit.conftest import Clock, QuietListener, RecordingSwitch
from tests.unit.routing.test_router import (
    AG1,
    AG2,
    AG3,
    LOOPBACK_ALLOWED,
    N1,
    N2,
    Call,
    DialWhomServer,
    make_router,
    sales,
)
from tests.unit.routing.test_router import route as route_of

ZA = "+27115550101"
B1, B2 = "+27115550201", "+27115550202"
UK = "+442079460000"  # London, a geographic number
ZA_PREMIUM = "+27862345678"  # phonenumbers' example of a South African premium-rate number
UK_PREMIUM = "+449012345678"


def policy(**settings: Any) -> DestinationPolicy:
    return DestinationPolicy(DestinationsConfig(**settings))


def rule_of(target: str, **settings: Any) -> str | None:
    refusal = policy(**settings).refusal(target)
    return None if refusal is None else refusal.rule


def test_the_defaults_refuse_only_premium_rate_numbers() -> None:
    for target in (ZA, UK, "sip:desk@pbx.example.com:5070", "endpoint:desk-12"):
        assert rule_of(target) is None
    assert rule_of(ZA_PREMIUM) == "destinations.block_premium_rate"
    assert rule_of(UK_PREMIUM) == "destinations.block_premium_rate"
    assert rule_of(ZA_PREMIUM, block_premium_rate=False) is None


def test_the_longest_matching_prefix_decides_and_a_tie_is_blocked() -> None:
    settings: dict[str, Any] = {"allowed_prefixes": ["+27", "+2786123"],
                                "blocked_prefixes": ["+2786"], "block_premium_rate": False}
    assert rule_of(ZA, **settings) is None
    assert rule_of("+27862000000", **settings) == "destinations.blocked_prefixes"
    assert rule_of("+27861234567", **settings) is None  # +2786123 is longer than +2786
    assert rule_of(UK, **settings) == "destinations.allowed_prefixes"  # international
    assert rule_of(ZA, allowed_prefixes=["+2711"], blocked_prefixes=["+2711"]) == \
        "destinations.blocked_prefixes"
    assert rule_of(UK, blocked_prefixes=["+27"]) is None  # no allow-list: the rest is open


def test_sip_hosts_and_endpoints_are_allow_lists_when_set() -> None:
    hosts: dict[str, Any] = {"sip_hosts": ["pbx.example.com", "*.example.net", "[2001:db8::1]"]}
    assert rule_of("sip:desk@pbx.example.com:5070", **hosts) is None
    assert rule_of("sip:desk@a.b.example.net", **hosts) is None
    assert rule_of("sip:desk@[2001:db8::1]:5060", **hosts) is None
    assert rule_of("sip:desk@evil.example.org", **hosts) == "destinations.sip_hosts"
    assert rule_of("sip:desk@pbx.example.com.evil.org", **hosts) == "destinations.sip_hosts"
    assert rule_of("sip:desk@example.net", **hosts) == "destinations.sip_hosts"
    endpoints: dict[str, Any] = {"endpoints": ["desk-*", "reception"]}
    assert rule_of("endpoint:desk-12", **endpoints) is None
    assert rule_of("endpoint:reception", **endpoints) is None
    assert rule_of("endpoint:trunk", **endpoints) == "destinations.endpoints"
    # Each list governs its own kind only.
    assert rule_of(ZA, **hosts, **endpoints) is None


def test_the_config_reads_the_table_and_refuses_a_prefix_that_is_not_e164(tmp_path: Path) -> None:
    path = tmp_path / "callconnect.toml"
    path.write_text('[destinations]\nallowed_prefixes = ["+27"]\nblock_premium_rate = false\n'
                    'endpoints = ["desk-*"]\n')
    config = load_config(path, environ={"CALLCONNECT_DESTINATIONS_SIP_HOSTS": "a.example.com,b.example.com"})
    assert config.destinations == DestinationsConfig(
        allowed_prefixes=["+27"], block_premium_rate=False, sip_hosts=["a.example.com", "b.example.com"],
        endpoints=["desk-*"])
    assert load_config(None, environ={}).destinations == DestinationsConfig()
    for bad in ("27", "+27 11", "0027", "+"):
        path.write_text(f'[destinations]\nblocked_prefixes = ["{bad}"]\n')
        with pytest.raises(ConfigError) as caught:
            load_config(path, environ={})
        assert caught.value.details["setting"] == "destinations.blocked_prefixes"


# ---------------------------------------------------------------- the call service refusing


@pytest.fixture
def service(tmp_path: Path, store: SqliteStore,
            live_clients: LiveClients) -> Iterator[tuple[CallService, RecordingSwitch]]:
    config = Config()
    config.destinations = DestinationsConfig(
        allowed_prefixes=["+27"], blocked_prefixes=["+2711555029"],
        sip_hosts=["pbx.example.com"], endpoints=["desk-*"])
    switch = RecordingSwitch(lambda target: None)
    calls = CallService(config, switch, WhisperRenderer(tmp_path, "en", 160, 30.0), QuietListener(),
                        records=store, outbound=live_clients(config.outbound))
    yield calls, switch
    for call in calls.calls.values():
        assert call.task is not None
        call.task.cancel()


def request(**fields: Any) -> CallRequest:
    return make_request(**{"leg_a": ZA, "leg_b": B1, "record": False, **fields})


@pytest.mark.parametrize(("fields", "field", "rule"), [
    ({"leg_a": UK}, "leg_a", "destinations.allowed_prefixes"),
    ({"leg_a": "endpoint:trunk"}, "leg_a", "destinations.endpoints"),
    ({"leg_b": [B1, "+27115550299"]}, "leg_b[1]", "destinations.blocked_prefixes"),
    ({"leg_b": ZA_PREMIUM}, "leg_b", "destinations.block_premium_rate"),
    ({"leg_b": [B1, "sip:desk@evil.example.org"]}, "leg_b[1]", "destinations.sip_hosts"),
    ({"fallbacks": {"busy": {"dial": [B2, {"to": UK}]}}}, "fallbacks.busy.dial[1]",
     "destinations.allowed_prefixes"),
])
async def test_every_target_the_request_names_is_checked_before_anything_is_dialed(
        service: tuple[CallService, RecordingSwitch], fields: dict[str, Any], field: str,
        rule: str) -> None:
    calls, switch = service
    with pytest.raises(DestinationRefused) as caught:
        await calls.start(request(**fields))
    refusal = caught.value
    assert (refusal.error_id, refusal.http_status) == ("destination-refused", 403)
    assert refusal.details["field"] == field and refusal.details["rule"] == rule
    assert field in refusal.message and rule in refusal.message
    assert switch.commands == [] and calls.calls == {}


async def test_a_request_inside_the_policy_is_placed(
        service: tuple[CallService, RecordingSwitch]) -> None:
    calls, switch = service
    await calls.start(request(leg_a="endpoint:desk-1", leg_b=[B1, "sip:desk@pbx.example.com"],
                              strategy="simultaneous"))
    assert len(switch.commands) == 1  # leg A originated


# ---------------------------------------------------------------- targets that come up later


@pytest.fixture
async def whom(serve: Serve, live_clients: LiveClients) -> AsyncIterator[DialWhomServer]:
    server = DialWhomServer(live_clients(LOOPBACK_ALLOWED))
    app = web.Application()
    app.router.add_get("/{name}", server.handle)
    server.base = await serve(app)
    yield server
    server.release.set()


def screened_router(spec: RouteSpec, store: SqliteStore, destinations: DestinationsConfig,
                    **options: Any) -> Router:
    compliance = Compliance(ComplianceConfig(), "ZA", store, Clock(1_000_000.0), destinations)
    router = make_router(spec, **options)
    router.screen = compliance.screen
    return router


async def test_group_agents_the_policy_refuses_are_skipped_and_reported(store: SqliteStore) -> None:
    destinations = DestinationsConfig(blocked_prefixes=[AG1])
    group = sales(Strategy.SEQUENTIAL)
    call = Call(screened_router(route_of("group:sales"), store, destinations, groups=[group]))
    with structlog.testing.capture_logs() as logs:
        assert await call.ring() == (AG2,)
    assert call.attempts[0].skipped == ((AG1, "destinations.blocked_prefixes"),)
    assert [(e["target"], e["rule"]) for e in logs if e.get("source") == "group:sales"] == \
        [(AG1, "destinations.blocked_prefixes")]
    # Every agent refused: the group's all-busy path, saying why.
    refused_all = DestinationsConfig(allowed_prefixes=["+44"])
    end = await Call(screened_router(route_of("group:sales"), store, refused_all,
                                     groups=[group])).ask()
    assert isinstance(end, RouteExhausted) and end.status is CallStatus.BUSY
    assert f"{AG3} (destinations.allowed_prefixes)" in end.reason


async def test_dial_whom_numbers_the_policy_refuses_are_skipped(
        whom: DialWhomServer, store: SqliteStore) -> None:
    url = whom.url("/whom", (200, f"{ZA_PREMIUM},{N2},{N1}"))
    call = Call(screened_router(route_of(url, ask_again=False), store,
                                DestinationsConfig(blocked_prefixes=[N2]), asker=whom.client))
    first = await call.ask()
    assert isinstance(first, TargetsChosen)
    assert first.attempt.targets == (N1,)
    assert first.attempt.skipped == ((ZA_PREMIUM, "destinations.block_premium_rate"),
                                     (N2, "destinations.blocked_prefixes"))
