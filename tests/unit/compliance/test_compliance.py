"""Unit tests for the compliance guards (controller.compliance) and the limits
per trunk and agent (controller.daemon.admission.LegLimits): calling windows
in each number's zones, the do-not-call file and list, the daily cap kept in a
real SQLite store, and the call service refusing before anything is dialed."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog
from aiohttp import web

from controller.calls.request import CallRequest, make_request
from controller.calls.service import CallService
from controller.compliance.dnc import DncFile, parse_dnc_file
from controller.compliance.guard import Compliance
from controller.compliance.windows import (
    next_open,
    parse_days,
    parse_hours,
    refuse_outside,
    window_of,
    zones_for,
)
from controller.config import ComplianceConfig, Config, LimitsConfig, load_config
from controller.core.events import RouteExhausted, TargetsChosen
from controller.core.machine import CallConnect
from controller.core.outcomes import CallStatus
from controller.core.plan import CallPlan
from controller.daemon.admission import LegLimits
from controller.daemon.metrics import Metrics
from controller.daemon.scheduler import Scheduler
from controller.errors import (
    AgentLimit,
    AttemptCapReached,
    ConfigError,
    DncFromFile,
    DoNotCall,
    InvalidField,
    OutsideCallingHours,
    TrunkLimit,
)
from controller.routing.router import Router
from controller.routing.spec import RouteSpec, Strategy
from controller.store import IdempotencyKey, StoredCall, StoreError
from controller.store.sqlite import SqliteStore
from controller.store.sqlite.schema import SCHEMA_VERSION
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
    route,
    sales,
)

ZA = "+27115550101"  # Africa/Johannesburg, UTC+2 all year
B1, B2, B3 = "+27115550201", "+27115550202", "+27115550203"
NZ_MOBILE = "+6421234567"  # Pacific/Auckland and Pacific/Chatham (45 minutes apart)
NYC = "+12125550100"  # America/New_York
DAY = 86400


def at(zone: str, *when: int) -> float:
    return datetime(*when, tzinfo=ZoneInfo(zone)).timestamp()  # type: ignore[misc]


# ---------------------------------------------------------------- calling windows


@pytest.mark.parametrize(("text", "start", "end"), [
    ("08:00-21:00", 8 * 3600, 21 * 3600),
    ("20:00-02:00", 20 * 3600, 2 * 3600),
    ("09:30:15-17:00:01", 9 * 3600 + 30 * 60 + 15, 17 * 3600 + 1),
    ("00:00-24:00", 0, DAY),
])
def test_parse_hours(text: str, start: int, end: int) -> None:
    assert parse_hours(text, "calling_hours") == (start, end)


@pytest.mark.parametrize("text", ["8-21", "08:00", "08:00-25:00", "08:60-09:00", "10:00-10:00",
                                  "00:00-24:00:01", "a:bc-10:00", "08:00-09:00-10:00",
                                  # The whole text, nothing around it.
                                  "08:00-21:00\n", " 08:00-21:00", "08:00 - 21:00",
                                  "\uff10\uff18:00-21:00", "08:00-21:00\x00", " "])
def test_bad_hours_name_the_field(text: str) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_hours(text, "calling_hours")
    assert caught.value.details["field"] == "calling_hours"


def test_days() -> None:
    assert parse_days(["Mon", "tues", "FRIDAY", "sun"], "calling_days") == {0, 1, 4, 6}
    for bad in ("mo", "funday", "mondays", "", "mon\n", " mon", "m\u043en"):
        with pytest.raises(InvalidField) as caught:
            parse_days([bad], "calling_days")
        assert caught.value.details["field"] == "calling_days"
    assert window_of("", [], "h", "d") is None
    only_days = window_of("", ["sat"], "h", "d")
    assert only_days is not None and (only_days.start, only_days.end) == (0, DAY)


def test_an_overnight_window_wraps_and_belongs_to_the_day_it_starts_on() -> None:
    window = window_of("20:00-02:00", ["fri"], "h", "d")
    assert window is not None
    zone = "Africa/Johannesburg"
    # 2025-06-06 is a Friday.
    assert not window.open_at(datetime(2025, 6, 6, 19, 59, 59, tzinfo=ZoneInfo(zone)))
    assert window.open_at(datetime(2025, 6, 6, 20, 0, tzinfo=ZoneInfo(zone)))
    assert window.open_at(datetime(2025, 6, 7, 1, 59, 59, tzinfo=ZoneInfo(zone)))  # Saturday
    assert not window.open_at(datetime(2025, 6, 7, 2, 0, tzinfo=ZoneInfo(zone)))
    assert not window.open_at(datetime(2025, 6, 7, 21, 0, tzinfo=ZoneInfo(zone)))  # Saturday's
    assert not window.open_at(datetime(2025, 6, 6, 1, 0, tzinfo=ZoneInfo(zone)))  # Thursday's
    # From Saturday morning the next opening is next Friday 20:00.
    assert next_open(window, [zone], at(zone, 2025, 6, 7, 3, 0)) == at(zone, 2025, 6, 13, 20, 0)


@pytest.mark.parametrize(("now", "opens"), [
    # The night before spring forward (2025-03-09): 08:00 EDT is 12:00 UTC, not 13:00.
    (datetime(2025, 3, 9, 3, 0, tzinfo=UTC), datetime(2025, 3, 9, 12, 0, tzinfo=UTC)),
    # The night before fall back (2025-11-02): 08:00 EST is 13:00 UTC, not 12:00.
    (datetime(2025, 11, 2, 2, 0, tzinfo=UTC), datetime(2025, 11, 2, 13, 0, tzinfo=UTC)),
])
def test_next_opening_keeps_to_local_wall_clock_across_dst(now: datetime, opens: datetime) -> None:
    window = window_of("08:00-21:00", [], "h", "d")
    assert window is not None
    assert zones_for(NYC) == ("America/New_York",)
    assert next_open(window, zones_for(NYC), now.timestamp()) == opens.timestamp()


def test_a_number_in_several_zones_must_be_inside_the_window_in_all_of_them() -> None:
    window = window_of("08:00-21:00", [], "h", "d")
    assert window is not None
    assert set(zones_for(NZ_MOBILE)) == {"Pacific/Auckland", "Pacific/Chatham"}
    # 07:30 in Auckland is 08:15 on the Chathams: open there, not in Auckland.
    early = at("Pacific/Auckland", 2025, 6, 10, 7, 30)
    with pytest.raises(OutsideCallingHours) as caught:
        refuse_outside(window, [("leg_b", NZ_MOBILE)], early, "calling_hours")
    assert caught.value.details["zone"] == "Pacific/Auckland"
    assert caught.value.details["next_window_at"] == at("Pacific/Auckland", 2025, 6, 10, 8, 0)
    # 20:30 in Auckland is 21:15 on the Chathams: closed there.
    late = at("Pacific/Auckland", 2025, 6, 10, 20, 30)
    with pytest.raises(OutsideCallingHours) as caught:
        refuse_outside(window, [("leg_b", NZ_MOBILE)], late, "calling_hours")
    details = caught.value.details
    assert details["zone"] == "Pacific/Chatham" and details["field"] == "leg_b"
    assert details["local_time"] == "2025-06-10T21:15:00+12:45"
    assert details["next_window_at"] == at("Pacific/Auckland", 2025, 6, 11, 8, 0)
    assert details["retry_after"] == pytest.approx(11.5 * 3600)
    # Inside both: nothing raised.
    refuse_outside(window, [("leg_b", NZ_MOBILE)], at("Pacific/Auckland", 2025, 6, 10, 12, 0),
                   "calling_hours")


def test_a_window_never_open_in_all_zones_at_once_gives_no_next_time() -> None:
    window = window_of("08:00-09:00", [], "h", "d")
    assert window is not None
    zones = ["Pacific/Auckland", "Europe/London"]
    assert next_open(window, zones, at("UTC", 2025, 6, 10, 0, 0)) is None
    with pytest.raises(OutsideCallingHours) as caught:
        refuse_outside(window, [("leg_a", "+447911123456"), ("leg_b", NZ_MOBILE)],
                       at("UTC", 2025, 6, 10, 0, 0), "calling_hours")
    assert "next_window_at" not in caught.value.details
    assert "retry_after" not in caught.value.details


def test_a_number_with_no_known_zone_is_taken_to_be_in_utc() -> None:
    assert zones_for("+882345678901") == ("UTC",)


# ---------------------------------------------------------------- the do-not-call file


def test_dnc_file_lines_bad_ones_logged_with_their_line_number(tmp_path: Path) -> None:
    text = ("# numbers that asked not to be called\n"
            "+27115550202, asked on the phone   # ticket 4411\n"
            "011 555 0203\n"
            "not a number, oops\n"
            "\n"
            "  +27115550202, again\n")
    with structlog.testing.capture_logs() as logs:
        entries = parse_dnc_file(text, "ZA", "dnc.txt")
    assert sorted(entries) == [B2, B3]
    assert entries[B2].reason == "asked on the phone" and entries[B2].source == "file"
    bad = [entry for entry in logs if entry["event"] == "dnc.bad_line"]
    assert [(entry["line"], entry["path"]) for entry in bad] == [(4, "dnc.txt")]


def test_dnc_file_is_read_again_when_it_changes_and_kept_when_it_goes(tmp_path: Path) -> None:
    path = tmp_path / "dnc.txt"
    path.write_text(f"{B1}\n")
    dnc = DncFile(path, "ZA")
    assert set(dnc.entries()) == {B1}
    path.write_text(f"{B2}\n{B3}\n")
    os.utime(path, ns=(0, 10**18))  # a new modification time, even on a coarse clock
    assert set(dnc.entries()) == {B2, B3}
    path.unlink()
    assert set(dnc.entries()) == {B2, B3}  # a deleted file must not quietly allow calls


def test_a_missing_dnc_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        DncFile(tmp_path / "missing.txt", "ZA")
    assert caught.value.details["setting"] == "compliance.dnc_file"


def test_config_checks_compliance_and_limits_settings(tmp_path: Path) -> None:
    for text, setting in [
        ('[compliance]\ncalling_hours = "8-21"\n', "compliance.calling_hours"),
        ('[compliance]\ncalling_days = ["mon", "someday"]\n', "compliance.calling_days"),
        ("[compliance]\nmax_attempts_per_number_per_day = -1\n",
         "compliance.max_attempts_per_number_per_day"),
        ("[limits]\ntrunk_max_active = -2\n", "limits.trunk_max_active"),
        ("[limits]\nagent_calls_per_second = -0.5\n", "limits.agent_calls_per_second"),
    ]:
        path = tmp_path / "callconnect.toml"
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_config(path, environ={})
        assert caught.value.details["setting"] == setting, text
    path.write_text('[compliance]\ndnc_file = "lists/dnc.txt"\n')
    assert load_config(path, environ={}).compliance.dnc_file == str(tmp_path / "lists" / "dnc.txt")


# ---------------------------------------------------------------- the store




async def test_a_version_2_store_is_migrated_keeping_its_calls(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    store = SqliteStore(path)
    await store.open()
    await store.put_group("sales", {"agents": [B1]})
    await store.close()
    with sqlite3.connect(path) as db:  # as a callconnect of schema version 2 left it
        db.execute("DROP TABLE dnc")
        db.execute("DROP TABLE number_attempts")
        db.execute("DROP TABLE numbers")  # version 5's
        db.execute("DROP INDEX calls_open")  # version 6's
        db.execute("DROP INDEX deliveries_by_created_at")  # version 6's
        db.execute("UPDATE schema_version SET version = 2")
    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.list_groups() == {"sales": {"agents": [B1]}}
        await store.put_dnc(B1, "asked", 5.0)
        await store.record_attempts("c1", [B2], 10.0)
        assert await store.attempts_since([B2], 0.0) == {B2: [10.0]}
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)


async def test_dnc_in_the_store(store: SqliteStore) -> None:
    first = await store.put_dnc(B2, "asked", 100.0)
    again = await store.put_dnc(B2, "asked twice", 200.0)
    assert (again.reason, again.added_at, again.source) == ("asked twice", first.added_at, "api")
    await store.put_dnc(B1, "", 300.0)
    assert [e.number for e in await store.list_dnc(None, 10)] == [B1, B2]
    assert [e.number for e in await store.list_dnc(B1, 10)] == [B2]
    assert set(await store.dnc_entries([B1, B3])) == {B1}
    assert await store.delete_dnc(B1) is True
    assert await store.delete_dnc(B1) is False


async def test_scheduled_calls_in_the_store(store: SqliteStore) -> None:
    def call(call_id: str, state: str, scheduled_for: float | None = None) -> StoredCall:
        snapshot = {"scheduled_for": scheduled_for} if scheduled_for else {"state": state}
        return StoredCall(call_id, 100.0, 100.0, state, None, {"leg_a": ZA, "leg_b": B2},
                          snapshot, idempotency_key=IdempotencyKey(f"key-{call_id}"))

    await store.create_call(call("later", "scheduled", 500.0))
    await store.create_call(call("sooner", "scheduled", 300.0))
    await store.create_call(call("live", "bridged"))
    assert [c.call_id for c in await store.scheduled_calls()] == ["sooner", "later"]
    assert [c.call_id for c in await store.open_calls()] == ["live"]  # nothing to reconcile
    page = await store.list_calls(status="active")
    assert [c.call_id for c in page.calls] == ["live"]
    page = await store.list_calls(status="scheduled")
    assert sorted(c.call_id for c in page.calls) == ["later", "sooner"]
    # Placing takes the row over under the same id and key, keeping created_at.
    placed = call("sooner", "dialing-a")
    placed.created_at = 400.0
    assert await store.create_call(placed) == (placed, True)
    stored = await store.get_call("sooner")
    assert stored is not None and stored.state == "dialing-a" and stored.created_at == 100.0
    assert stored.idempotency_key == IdempotencyKey("key-sooner")
    # Once placed it is no longer scheduled: neither cancel nor placing again apply.
    assert await store.save_scheduled(call("sooner", "ended"), [], []) is False
    with pytest.raises(StoreError):
        await store.create_call(call("sooner", "dialing-a"))
    assert await store.save_scheduled(call("later", "ended"), [], []) is True


# ---------------------------------------------------------------- the guard on a real store




def guard(store: SqliteStore, clock: Clock, dnc_file: Path | None = None, cap: int = 0,
          hours: str = "") -> Compliance:
    config = ComplianceConfig(dnc_file=str(dnc_file) if dnc_file else "", calling_hours=hours,
                              max_attempts_per_number_per_day=cap)
    return Compliance(config, "ZA", store, clock)


async def check(compliance: Compliance, call_id: str, *legs: tuple[str, str]) -> None:
    await compliance.check_request(call_id, named=legs, rung_first=legs,
                                   windows=compliance.windows_for(None, None))


async def test_the_cap_counts_calls_over_a_rolling_24_hours_and_survives_a_restart(
        tmp_path: Path, store: SqliteStore) -> None:
    clock = Clock(1_000_000.0)
    compliance = guard(store, clock, cap=2)
    await compliance.record("c1", [B2], clock.now - 5000)
    await compliance.record("c1", [B2], clock.now - 5000)  # the same call counts once
    await compliance.record("c2", [B2, "sip:desk@pbx.example.com"], clock.now - 1000)
    with pytest.raises(AttemptCapReached) as caught:
        await check(compliance, "c3", ("leg_a", ZA), ("leg_b", B2))
    details = caught.value.details
    assert (details["field"], details["number"], details["attempts"]) == ("leg_b", B2, 2)
    assert details["rule"] == "compliance.max_attempts_per_number_per_day"
    # Once the oldest call is 24 hours old, one call is left.
    assert details["retry_after"] == pytest.approx(DAY - 5000)
    await store.close()
    reopened = SqliteStore(store.path)
    await reopened.open()
    try:
        again = guard(reopened, clock, cap=2)
        with pytest.raises(AttemptCapReached):
            await check(again, "c3", ("leg_b", B2))
        clock.now += DAY - 5000
        await check(again, "c3", ("leg_b", B2))
    finally:
        await reopened.close()


async def test_a_request_holds_its_numbers_until_it_dials_or_ends(store: SqliteStore) -> None:
    clock = Clock(1_000_000.0)
    compliance = guard(store, clock, cap=1)
    await check(compliance, "c1", ("leg_a", ZA), ("leg_b", B2))
    with pytest.raises(AttemptCapReached) as caught:
        await check(compliance, "c2", ("leg_b", B2))  # c1 has not dialed it yet
    assert caught.value.details["retry_after"] == 1.0
    assert await compliance.screen([B2, B3]) == {B2: "attempt-cap"}
    compliance.release("c1")  # c1 never dialed B2
    await check(compliance, "c2", ("leg_b", B2))


async def test_dnc_refuses_naming_the_field_and_the_list(tmp_path: Path,
                                                         store: SqliteStore) -> None:
    listed = tmp_path / "dnc.txt"
    listed.write_text(f"{B3}, complaint\n")
    compliance = guard(store, Clock(1_000_000.0), dnc_file=listed)
    await compliance.add_dnc(B2, "asked")
    with pytest.raises(DoNotCall) as caught:
        await check(compliance, "c1", ("leg_a", ZA), ("leg_b[0]", B1), ("leg_b[1]", B2))
    assert caught.value.details == {"field": "leg_b[1]", "rule": "do-not-call", "number": B2,
                                    "source": "api"}
    assert "do-not-call list" in caught.value.message and "leg_b[1]" in caught.value.message
    with pytest.raises(DoNotCall) as caught:
        await check(compliance, "c1", ("leg_a", B3))
    assert caught.value.details["source"] == "file" and str(listed) in caught.value.message
    # SIP URIs and endpoints are not numbers.
    await check(compliance, "c1", ("leg_a", ZA), ("leg_b", "endpoint:desk-12"),
                ("leg_b[2]", "sip:+27115550202@pbx.example.com"))
    assert await compliance.screen([B1, B2, B3, "group:sales"]) == {B2: "do-not-call",
                                                                     B3: "do-not-call"}


@pytest.mark.parametrize("reason", [
    "asked\nX-Injected: 1", "tab\there", "\x1b[31mred", "\u202eevil\u202c", "zero\u200bwidth",
    "\u2066isolate\u2069", "x" * 501])
async def test_a_dnc_reason_with_control_or_bidi_characters_is_refused(
        store: SqliteStore, reason: str) -> None:
    compliance = guard(store, Clock(1_000_000.0))
    with pytest.raises(InvalidField) as caught:
        await compliance.add_dnc(B2, reason)
    assert caught.value.details == {"field": "reason"}
    assert await compliance.dnc_entry(B2) is None  # nothing was kept
    await compliance.add_dnc(B2, "asked on 2025-03-02 (ticket #4411), été à 日本")


async def test_a_dnc_refusal_never_echoes_control_or_bidi_characters(
        tmp_path: Path, store: SqliteStore) -> None:
    listed = tmp_path / "dnc.txt"
    listed.write_text(f"{B3}, complaint\u202e gnol\x1b[2J\n")
    compliance = guard(store, Clock(1_000_000.0), dnc_file=listed)
    await store.put_dnc(B2, "stored before\u202e the rule\r\n", 5.0)  # an older daemon's
    for number, reason in ((B2, "stored before the rule"), (B3, "complaint gnol[2J")):
        with pytest.raises(DoNotCall) as caught:
            await check(compliance, "c1", ("leg_a", number))
        assert f"({reason})" in caught.value.message, caught.value.message
    listed_entry = await compliance.dnc_entry(B3)
    assert listed_entry is not None and listed_entry.reason == "complaint gnol[2J"


async def test_dnc_list_merges_the_file_and_the_api_and_protects_the_file(
        tmp_path: Path, store: SqliteStore) -> None:
    listed = tmp_path / "dnc.txt"
    listed.write_text(f"{B1}\n{B3}\n")
    compliance = guard(store, Clock(1_000_000.0), dnc_file=listed)
    await compliance.add_dnc(B2, "asked")
    await compliance.add_dnc(B3, "also in the file")
    page, cursor = await compliance.list_dnc(None, 2)
    assert [(e.number, e.source) for e in page] == [(B1, "file"), (B2, "api")]
    assert cursor == B2
    page, cursor = await compliance.list_dnc(cursor, 2)
    assert [(e.number, e.source) for e in page] == [(B3, "file")] and cursor is None
    with pytest.raises(DncFromFile):
        await compliance.remove_dnc(B3)
    assert await compliance.remove_dnc(B2) is True
    assert await compliance.remove_dnc(B2) is False


# ---------------------------------------------------------------- limits per trunk and agent


class Live:
    """A live call as LegLimits reads it."""

    def __init__(self, leg_a: str, targets: tuple[str, ...] = (), agent: str | None = None
                 ) -> None:
        self.core = CallConnect(CallPlan("x", leg_a, ", ".join(targets), 30, 60), created_at=0.0)
        if targets:
            self.core.attempts.append({"targets": list(targets)})
        self.agent = agent


def trunk_of(target: str) -> str | None:
    return "trunk-" + target[:7] if target.startswith("+") else None


def limits(calls: dict[str, Any], clock: Clock, **settings: Any) -> LegLimits:
    return LegLimits(LimitsConfig(**settings), trunk_of, calls, clock)


def test_agent_max_active_counts_leg_a_and_an_agent_who_answered_leg_b() -> None:
    calls: dict[str, Any] = {"c1": Live(ZA, (B2,))}
    legs = limits(calls, Clock(0.0), agent_max_active=1)
    with pytest.raises(AgentLimit) as caught:
        legs.admit("c2", [("leg_a", ZA), ("leg_b", B3)])
    assert caught.value.details["field"] == "leg_a" and caught.value.details["agent"] == ZA
    assert caught.value.details["rule"] == "limits.agent_max_active"
    assert caught.value.retry_after == 1.0
    calls["c1"] = Live(B1, (ZA,), agent=ZA)  # ZA answered leg B of another call
    with pytest.raises(AgentLimit):
        legs.admit("c2", [("leg_a", ZA), ("leg_b", B3)])
    del calls["c1"]
    legs.admit("c2", [("leg_a", ZA), ("leg_b", B3)])
    with pytest.raises(AgentLimit):  # c2 holds its place until it is live
        legs.admit("c3", [("leg_a", ZA), ("leg_b", B3)])
    legs.release("c2")
    legs.admit("c3", [("leg_a", ZA), ("leg_b", B3)])


def test_trunk_max_active_counts_each_trunk_a_call_uses_once() -> None:
    calls: dict[str, Any] = {"c1": Live("+4479111", ("+2711555",))}
    legs = limits(calls, Clock(0.0), trunk_max_active=1)
    with pytest.raises(TrunkLimit) as caught:
        legs.admit("c2", [("leg_a", "+3361234"), ("leg_b[0]", "sip:a@b"), ("leg_b[1]", B2)])
    assert caught.value.details["field"] == "leg_b[1]"
    assert caught.value.details["trunk"] == "trunk-+271155"
    legs.admit("c2", [("leg_a", "+3361234"), ("leg_b", "endpoint:desk")])


def test_calls_per_second_per_trunk_is_a_token_bucket_untouched_by_refusals() -> None:
    clock = Clock(100.0)
    legs = limits({}, clock, trunk_calls_per_second=2, agent_calls_per_second=1)
    legs.admit("c1", [("leg_a", "+4479111"), ("leg_b", B1)])
    legs.release("c1")
    with pytest.raises(AgentLimit) as caught:  # the same agent, within a second
        legs.admit("c2", [("leg_a", "+4479111"), ("leg_b", B2)])
    assert caught.value.details["rule"] == "limits.agent_calls_per_second"
    assert caught.value.retry_after == pytest.approx(1.0)
    legs.admit("c3", [("leg_a", "+4479222"), ("leg_b", B3)])  # B's trunk: its second start
    with pytest.raises(TrunkLimit) as caught:
        legs.admit("c4", [("leg_a", "+3361234"), ("leg_b", B1)])
    assert caught.value.details["rule"] == "limits.trunk_calls_per_second"
    assert caught.value.retry_after == pytest.approx(0.5)
    clock.now += 0.5
    # The refused c4 took no token from +33's trunk: c5 still has its first start.
    legs.admit("c5", [("leg_a", "+3361234"), ("leg_b", B1)])


# ---------------------------------------------------------------- the call service refusing


@pytest.fixture
def service(tmp_path: Path, store: SqliteStore,
            live_clients: LiveClients) -> Iterator[tuple[CallService, RecordingSwitch]]:
    config = Config()
    config.compliance.max_attempts_per_number_per_day = 1
    switch = RecordingSwitch(trunk_of)
    calls = CallService(config, switch, WhisperRenderer(tmp_path, "en", 160, 30.0), QuietListener(),
                        records=store, outbound=live_clients(config.outbound))
    yield calls, switch
    for call in calls.calls.values():
        assert call.task is not None
        call.task.cancel()


def request(**fields: Any) -> CallRequest:
    return make_request(**{"leg_a": ZA, "leg_b": B2, "record": False, **fields})


async def test_every_number_the_request_names_is_checked_before_anything_is_dialed(
        service: tuple[CallService, RecordingSwitch]) -> None:
    calls, switch = service
    await calls.compliance.add_dnc(B3, "")
    for fields, field in [
        ({"leg_a": B3}, "leg_a"),
        ({"leg_b": [B1, B3]}, "leg_b[1]"),
        ({"leg_b": B1, "fallbacks": {"busy": {"dial": [B2, {"to": B3}]}}}, "fallbacks.busy.dial[1]"),
    ]:
        with pytest.raises(DoNotCall) as caught:
            await calls.start(request(**fields))
        assert caught.value.details["field"] == field
    assert switch.commands == [] and calls.calls == {}


async def test_a_placed_call_counts_against_the_cap_and_a_second_is_refused(
        service: tuple[CallService, RecordingSwitch]) -> None:
    calls, switch = service
    await calls.start(request())
    assert len(switch.commands) == 1  # leg A originated
    with pytest.raises(AttemptCapReached) as caught:
        await calls.start(request(leg_b=B1))
    assert caught.value.details["field"] == "leg_a"
    with pytest.raises(AttemptCapReached) as caught:  # B2 is held by the first call
        await calls.start(request(leg_a=B1))
    assert caught.value.details["field"] == "leg_b"
    assert len(switch.commands) == 1
    # The first call ends before leg A answers: leg A was called, B2 never was.
    first = next(iter(calls.calls.values()))
    assert first.task is not None
    first.task.cancel()
    await asyncio.gather(first.task, return_exceptions=True)
    with pytest.raises(AttemptCapReached) as caught:
        await calls.start(request(leg_b=B1))
    assert caught.value.details["field"] == "leg_a"
    await calls.start(request(leg_a=B1))
    assert len(switch.commands) == 2


async def test_the_requests_window_narrows_the_configs_and_cannot_widen_it(
        service: tuple[CallService, RecordingSwitch]) -> None:
    calls, switch = service
    now = datetime.now(ZoneInfo("Africa/Johannesburg"))
    closed = f"{(now.hour + 2) % 24:02d}:00-{(now.hour + 3) % 24:02d}:00"
    calls.compliance.config.calling_hours = closed
    with pytest.raises(OutsideCallingHours) as widened:
        await calls.start(request(calling_hours="00:00-24:00"))
    assert widened.value.details["rule"] == "compliance.calling_hours"
    calls.compliance.config.calling_hours = "00:00-24:00"
    with pytest.raises(OutsideCallingHours) as caught:
        await calls.start(request(calling_hours=closed))
    details = caught.value.details
    assert details["field"] == "leg_a" and details["zone"] == "Africa/Johannesburg"
    assert details["rule"] == "calling_hours"
    assert 3600 - 60 < details["next_window_at"] - now.timestamp() <= 2 * 3600 + 1
    with pytest.raises(InvalidField) as bad:
        await calls.start(request(calling_days=["someday"]))
    assert bad.value.details["field"] == "calling_days"
    with pytest.raises(InvalidField) as bad:
        await calls.start(request(outside_calling_hours="later"))
    assert bad.value.details["field"] == "outside_calling_hours"
    assert switch.commands == []


async def test_limits_refuse_through_the_service_and_free_the_place_of_a_refused_call(
        service: tuple[CallService, RecordingSwitch]) -> None:
    calls, switch = service
    calls.compliance.cap = 0
    calls.limits = LegLimits(LimitsConfig(agent_max_active=1), trunk_of, calls.calls)
    await calls.start(request())
    with pytest.raises(AgentLimit):
        await calls.start(request(leg_b=B1))
    assert len(switch.commands) == 1
    first = next(iter(calls.calls.values()))
    assert first.task is not None
    first.task.cancel()
    await asyncio.gather(first.task, return_exceptions=True)
    assert calls.calls == {}
    await calls.start(request(leg_b=B1))  # the first call is gone: its agent is free


# ---------------------------------------------------------------- the router skipping numbers


@pytest.fixture
async def whom(serve: Serve, live_clients: LiveClients) -> AsyncIterator[DialWhomServer]:
    """A dial-whom URL on loopback (as in test_router)."""
    server = DialWhomServer(live_clients(LOOPBACK_ALLOWED))
    app = web.Application()
    app.router.add_get("/{name}", server.handle)
    server.base = await serve(app)
    yield server
    server.release.set()


def screened_router(spec: RouteSpec, compliance: Compliance, **options: Any) -> Router:
    router = make_router(spec, **options)
    router.screen = compliance.screen
    return router


async def test_dial_whom_numbers_on_the_dnc_list_are_skipped_and_reported(
        whom: DialWhomServer, store: SqliteStore) -> None:
    compliance = guard(store, Clock(1_000_000.0))
    await compliance.add_dnc(N2, "asked")
    url = whom.url("/whom", (200, f"{N2},{N1}"))
    call = Call(screened_router(route(url, ask_again=False), compliance, asker=whom.client))
    with structlog.testing.capture_logs() as logs:
        first = await call.ask()
    assert isinstance(first, TargetsChosen)
    assert first.attempt.targets == (N1,)
    assert first.attempt.skipped == ((N2, "do-not-call"),)
    skipped = [entry for entry in logs if entry["event"] == "route.dnc_skipped"]
    assert [(e["target"], e["source"]) for e in skipped] == [(N2, "dial-whom")]
    end = await call.run_out("no-answer")
    assert end.status is CallStatus.NO_ANSWER


async def test_a_dial_whom_answer_with_only_listed_numbers_fails_saying_why(
        whom: DialWhomServer, store: SqliteStore) -> None:
    compliance = guard(store, Clock(1_000_000.0))
    await compliance.add_dnc(N2, "asked")
    url = whom.url("/whom", (200, N2))
    end = await Call(screened_router(route(url, ask_again=False), compliance, asker=whom.client)).ask()
    assert isinstance(end, RouteExhausted) and end.status is CallStatus.FAILED
    assert f"{N2} (do-not-call)" in end.reason


async def test_group_agents_over_the_daily_cap_are_skipped_then_all_busy(
        store: SqliteStore) -> None:
    clock = Clock(1_000_000.0)
    compliance = guard(store, clock, cap=1)
    await compliance.record("earlier", [AG1], clock.now - 60)
    group = sales(Strategy.SEQUENTIAL)
    call = Call(screened_router(route("group:sales"), compliance, groups=[group]))
    with structlog.testing.capture_logs() as logs:
        assert await call.ring() == (AG2,)
    assert call.attempts[0].skipped == ((AG1, "attempt-cap"),)
    assert [e["target"] for e in logs if e["event"] == "route.cap_skipped"] == [AG1]
    # Every agent capped: the group's all-busy path, saying why.
    await compliance.record("earlier", [AG2, AG3], clock.now - 60)
    again = Call(screened_router(route("group:sales"), compliance, groups=[group]))
    end = await again.ask()
    assert isinstance(end, RouteExhausted) and end.status is CallStatus.BUSY
    assert "every agent of group sales is busy" in end.reason and "attempt-cap" in end.reason


# ---------------------------------------------------------------- scheduled calls


class Wakes:
    """The outbox, as the scheduler uses it."""

    def __init__(self) -> None:
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1


async def test_a_scheduled_call_is_placed_under_its_id_when_due_or_canceled(
        service: tuple[CallService, RecordingSwitch], store: SqliteStore) -> None:
    calls, switch = service
    calls.config.webhook.url = "https://hooks.example.com/done"
    outbox = Wakes()
    scheduler = Scheduler(calls.config, store, calls, outbox, Metrics("asterisk"),  # type: ignore[arg-type]
                          lambda: None)
    soon = await scheduler.schedule(request(), OutsideCallingHours(
        "closed", field="leg_a", next_window_at=time.time() + 0.3))
    later = await scheduler.schedule(request(leg_a=B1, leg_b=B3), OutsideCallingHours(
        "closed", field="leg_a", next_window_at=time.time() + 3600))
    assert soon.state == "scheduled" and switch.commands == []
    assert (await store.list_calls(status="active")).calls == []
    running = asyncio.create_task(scheduler.run())
    try:
        async with asyncio.timeout(5):
            while getattr(calls.calls.get(soon.call_id), "task", None) is None:  # placed
                await asyncio.sleep(0.05)
    finally:
        running.cancel()
    assert len(switch.commands) == 1 and list(calls.calls) == [soon.call_id]
    assert await scheduler.cancel(later) is True
    canceled = await store.get_call(later.call_id)
    assert canceled is not None and (canceled.state, canceled.status) == ("ended", "canceled")
    assert canceled.result is not None and canceled.result["leg_a"]["status"] == "not-dialed"
    [delivery] = await store.deliveries(later.call_id)
    assert delivery.event_type == "call.completed" and outbox.woken == 1
    assert await scheduler.cancel(later) is False
