"""Compliance guards and limits on the real lab, through the daemon's API: the
destination policy ([destinations]: prefixes, premium-rate numbers, SIP hosts,
endpoints; group agents and dial-whom numbers skipped), the do-not-call list
(API and file, and numbers a dial-whom URL names), calling windows (refused,
or scheduled and placed when the window opens, also across a restart), the
daily cap per number, and the limits per agent and per trunk.

Every refusal must dial nothing: no ``call.placing`` in the daemon's log, no
call in the list, no channel left (the autouse fixture checks the switch).

The lab's numbers are in South Africa (Africa/Johannesburg, UTC+2, no DST);
windows are written in that zone's wall-clock time, with seconds.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from tests.conftest import Serve
from tests.lab.conftest import DaemonProcess, api, log_events, wait_for_state

AGENT = "+27115550101"  # leg A: answers (trunk lab-answer-a)
AGENT_2 = "+27115550102"  # answers, also through lab-answer-a
CUSTOMER = "+27115550202"  # answers (trunk lab-answer-b)
CUSTOMER_2 = "+27115550203"  # answers, also through lab-answer-b
HANGS_UP = "+27115550601"  # answers, hangs up after 4 s (trunk lab-hangup)
ZONE = ZoneInfo("Africa/Johannesburg")


def window(opens_in: float, lasts: float) -> str:
    """A calling window, in the lab numbers' local time, opening ``opens_in``
    seconds from now."""
    start = datetime.now(ZONE) + timedelta(seconds=opens_in)
    return f"{start:%H:%M:%S}-{start + timedelta(seconds=lasts):%H:%M:%S}"


async def refused(daemon: DaemonProcess, body: dict[str, Any], status: int, error_id: str,
                  field: str) -> dict[str, Any]:
    """POST the call, expect the refusal, and check nothing was dialed for it."""
    placing = len(log_events(daemon, "call.placing"))
    async with api(daemon) as client:
        before = len((await client.get("/v1/calls")).json()["calls"])
        response = await client.post("/v1/calls", json=body)
        assert response.status_code == status, response.text
        error = response.json()
        assert error["error_id"] == error_id, error
        assert error["details"]["field"] == field and field in error["message"], error
        assert len((await client.get("/v1/calls")).json()["calls"]) == before
    assert len(log_events(daemon, "call.placing")) == placing, "a refused call was dialed"
    return {**error, "retry_after_header": response.headers.get("Retry-After")}


async def place(daemon: DaemonProcess, body: dict[str, Any]) -> dict[str, Any]:
    async with api(daemon) as client:
        response = await client.post("/v1/calls", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


async def ended(daemon: DaemonProcess, call_id: str, timeout: float = 60) -> dict[str, Any]:
    async with api(daemon) as client:
        return await wait_for_state(client, call_id, "ended", timeout=timeout)


# ---------------------------------------------------------------- do not call


@pytest.mark.lab
async def test_a_number_put_on_the_dnc_list_is_refused_as_leg_b_and_leg_a(
        daemon: DaemonProcess) -> None:
    async with api(daemon) as client:
        put = await client.put(f"/v1/dnc/{quote(CUSTOMER)}", json={"reason": "asked by phone"})
        assert put.status_code == 200, put.text
        assert put.json()["source"] == "api" and put.json()["reason"] == "asked by phone"
        local = await client.get("/v1/dnc/011%20555%200202")  # any format, normalised
        assert local.status_code == 200 and local.json()["number"] == CUSTOMER
        listed = (await client.get("/v1/dnc")).json()
        assert [e["number"] for e in listed["entries"]] == [CUSTOMER]

    error = await refused(daemon, {"leg_a": AGENT, "leg_b": ["+27115550203", CUSTOMER],
                                   "time_limit": 1}, 403, "do-not-call", "leg_b[1]")
    assert error["details"]["number"] == CUSTOMER and "do-not-call" in error["message"]
    await refused(daemon, {"leg_a": CUSTOMER, "leg_b": "+27115550203", "time_limit": 1},
                  403, "do-not-call", "leg_a")

    async with api(daemon) as client:
        assert (await client.delete(f"/v1/dnc/{quote(CUSTOMER)}")).status_code == 204
        gone = await client.delete(f"/v1/dnc/{quote(CUSTOMER)}")
        assert gone.status_code == 404 and gone.json()["error_id"] == "dnc-not-found"
    # Off the list, the same call goes through.
    call_id = (await place(daemon, {"leg_a": AGENT, "leg_b": CUSTOMER, "time_limit": 1,
                                    "record": False}))["call_uuid"]
    assert (await ended(daemon, call_id))["status"] == "completed"


@pytest.mark.lab
async def test_the_dnc_file_is_honoured_protected_and_read_again(
        start_daemon: Callable[..., DaemonProcess], tmp_path: Path) -> None:
    dnc = tmp_path / "dnc.txt"
    dnc.write_text(f"# complaints\n{CUSTOMER}, complaint 4411\nnot-a-number\n")
    daemon = start_daemon(CALLCONNECT_COMPLIANCE_DNC_FILE=str(dnc))
    await daemon.ready()
    error = await refused(daemon, {"leg_a": AGENT, "leg_b": CUSTOMER, "time_limit": 1},
                          403, "do-not-call", "leg_b")
    assert error["details"]["source"] == "file" and str(dnc) in error["message"]
    assert [e["line"] for e in log_events(daemon, "dnc.bad_line")] == [3]
    async with api(daemon) as client:
        protected = await client.delete(f"/v1/dnc/{quote(CUSTOMER)}")
        assert protected.status_code == 409 and protected.json()["error_id"] == "dnc-from-file"
    dnc.write_text("# nobody\n")
    call_id = (await place(daemon, {"leg_a": AGENT, "leg_b": CUSTOMER, "time_limit": 1,
                                    "record": False}))["call_uuid"]
    assert (await ended(daemon, call_id))["status"] == "completed"


@pytest.mark.lab
async def test_a_dial_whom_number_on_the_dnc_list_is_skipped(daemon: DaemonProcess,
                                                             serve: Serve) -> None:
    asked: list[dict[str, str]] = []

    async def whom(request: web.Request) -> web.Response:
        asked.append(dict(request.query))
        return web.Response(text=f"{CUSTOMER}, {CUSTOMER_2}", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/whom", whom)
    url = f"{await serve(app)}/whom"
    async with api(daemon) as client:
        assert (await client.put(f"/v1/dnc/{quote(CUSTOMER)}")).status_code == 200
    call_id = (await place(daemon, {"leg_a": AGENT, "leg_b": url, "strategy": "sequential",
                                    "dial_whom_ask_again": False, "time_limit": 1,
                                    "record": False}))["call_uuid"]
    result = (await ended(daemon, call_id))["result"]
    assert result["status"] == "completed" and result["answered_by"] == CUSTOMER_2
    assert [a["targets"] for a in result["attempts"]] == [[CUSTOMER_2]]
    assert result["attempts"][0]["skipped"] == [{"target": CUSTOMER, "rule": "do-not-call"}]
    assert [e["target"] for e in log_events(daemon, "route.dnc_skipped")] == [CUSTOMER]
    assert len(asked) == 1


# ---------------------------------------------------------------- destinations

PREMIUM_RATE = "+27862345678"  # a South African premium-rate number (phonenumbers' example)


@pytest.mark.lab
async def test_the_destination_policy_refuses_before_dialing_and_skips_later_targets(
        start_daemon: Callable[..., DaemonProcess], serve: Serve) -> None:
    daemon = start_daemon(CALLCONNECT_DESTINATIONS_BLOCKED_PREFIXES=CUSTOMER,
                          CALLCONNECT_DESTINATIONS_SIP_HOSTS="pbx.example.com",
                          CALLCONNECT_DESTINATIONS_ENDPOINTS="lab-answer-b")
    await daemon.ready()
    for body, field, rule in [
        ({"leg_a": AGENT, "leg_b": CUSTOMER}, "leg_b", "destinations.blocked_prefixes"),
        ({"leg_a": "endpoint:lab-answer-a", "leg_b": CUSTOMER_2}, "leg_a", "destinations.endpoints"),
        ({"leg_a": AGENT, "leg_b": [CUSTOMER_2, "sip:desk@127.0.0.1:5999"]}, "leg_b[1]",
         "destinations.sip_hosts"),
        ({"leg_a": AGENT, "leg_b": PREMIUM_RATE}, "leg_b", "destinations.block_premium_rate"),
        ({"leg_a": AGENT, "leg_b": CUSTOMER_2, "fallbacks": {"busy": {"dial": [CUSTOMER]}}},
         "fallbacks.busy.dial[0]", "destinations.blocked_prefixes"),
    ]:
        error = await refused(daemon, {**body, "time_limit": 1}, 403, "destination-refused", field)
        assert error["details"]["rule"] == rule and rule in error["message"], error

    # A group's agent the policy refuses is skipped when the group is expanded.
    async with api(daemon) as client:
        put = await client.put("/v1/groups/policy", json={"strategy": "sequential",
                                                          "agents": [CUSTOMER, CUSTOMER_2]})
        assert put.status_code == 200, put.text
    call_id = (await place(daemon, {"leg_a": AGENT, "leg_b": "group:policy", "time_limit": 1,
                                    "record": False}))["call_uuid"]
    result = (await ended(daemon, call_id))["result"]
    assert result["status"] == "completed" and result["answered_by"] == CUSTOMER_2, result
    assert result["attempts"][0]["skipped"] == [
        {"target": CUSTOMER, "rule": "destinations.blocked_prefixes"}]

    # So is a premium-rate number a dial-whom URL answers.
    async def whom(request: web.Request) -> web.Response:
        return web.Response(text=f"{PREMIUM_RATE}, {CUSTOMER_2}", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/whom", whom)
    url = f"{await serve(app)}/whom"
    call_id = (await place(daemon, {"leg_a": AGENT, "leg_b": url, "strategy": "sequential",
                                    "dial_whom_ask_again": False, "time_limit": 1,
                                    "record": False}))["call_uuid"]
    result = (await ended(daemon, call_id))["result"]
    assert result["status"] == "completed" and result["answered_by"] == CUSTOMER_2, result
    assert [a["targets"] for a in result["attempts"]] == [[CUSTOMER_2]]
    assert result["attempts"][0]["skipped"] == [
        {"target": PREMIUM_RATE, "rule": "destinations.block_premium_rate"}]


# ---------------------------------------------------------------- calling windows


@pytest.mark.lab
async def test_outside_the_calling_window_is_refused_with_when_it_opens(
        daemon: DaemonProcess) -> None:
    hours = window(opens_in=2 * 3600, lasts=3600)
    now = time.time()
    error = await refused(daemon, {"leg_a": AGENT, "leg_b": CUSTOMER, "calling_hours": hours,
                                   "time_limit": 1}, 403, "outside-calling-hours", "leg_a")
    details = error["details"]
    assert details["zone"] == "Africa/Johannesburg" and details["rule"] == "calling_hours"
    assert abs(details["next_window_at"] - (now + 2 * 3600)) < 5
    assert 2 * 3600 - 5 <= int(error["retry_after_header"]) <= 2 * 3600 + 5


@pytest.mark.lab
async def test_a_call_scheduled_for_its_window_is_placed_when_it_opens(
        daemon: DaemonProcess) -> None:
    body = {"leg_a": AGENT, "leg_b": CUSTOMER, "calling_hours": window(opens_in=5, lasts=600),
            "outside_calling_hours": "schedule", "time_limit": 2, "record": False}
    asked_at = time.time()
    accepted = await place(daemon, body)
    assert accepted["state"] == "scheduled" and accepted["leg_a_status"] == "pending"
    assert abs(accepted["scheduled_for"] - (asked_at + 5)) < 2
    call_id = accepted["call_uuid"]
    async with api(daemon) as client:
        listed = (await client.get("/v1/calls", params={"status": "scheduled"})).json()["calls"]
        assert [c["call_uuid"] for c in listed] == [call_id]
        assert (await client.get("/v1/calls", params={"status": "active"})).json()["calls"] == []
        assert (await client.get("/status")).json()["active_calls"] == 0
    assert log_events(daemon, "call.placing") == []
    done = await ended(daemon, call_id, timeout=60)
    assert done["status"] == "completed" and done["call_uuid"] == call_id
    assert [e["call_id"] for e in log_events(daemon, "call.placing")] == [call_id]
    # Asked for before, placed once the window opened.
    assert done["created_at"] == pytest.approx(asked_at, abs=1)
    assert done["result"]["created_at"] >= accepted["scheduled_for"] - 0.5
    assert done["timeline"][0]["data"]["to"] == "scheduled"


@pytest.mark.lab
async def test_a_scheduled_call_survives_a_restart_and_can_be_canceled(
        start_daemon: Callable[..., DaemonProcess]) -> None:
    first = start_daemon()
    await first.ready()
    soon = await place(first, {"leg_a": AGENT, "leg_b": CUSTOMER, "time_limit": 1,
                               "record": False, "outside_calling_hours": "schedule",
                               "calling_hours": window(opens_in=8, lasts=600)})
    later = await place(first, {"leg_a": AGENT_2, "leg_b": CUSTOMER_2, "time_limit": 1,
                                "outside_calling_hours": "schedule",
                                "calling_hours": window(opens_in=3600, lasts=600)})
    first.signal(signal.SIGKILL)
    first.wait(timeout=10)
    second = start_daemon()
    await second.ready()
    async with api(second) as client:
        canceled = await client.post(f"/v1/calls/{later['call_uuid']}/hangup")
        assert canceled.status_code == 202, canceled.text
        gone = await wait_for_state(client, later["call_uuid"], "ended", timeout=5)
        assert gone["status"] == "canceled" and gone["result"]["leg_a"]["status"] == "not-dialed"
    assert (await ended(second, soon["call_uuid"]))["status"] == "completed"
    assert [e["call_id"] for e in log_events(second, "call.placing")] == [soon["call_uuid"]]


# ---------------------------------------------------------------- the daily cap


@pytest.mark.lab
async def test_the_daily_cap_refuses_a_second_call_to_a_number(
        start_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = start_daemon(CALLCONNECT_COMPLIANCE_MAX_ATTEMPTS_PER_NUMBER_PER_DAY="1")
    await daemon.ready()
    first = await place(daemon, {"leg_a": AGENT, "leg_b": CUSTOMER, "time_limit": 1,
                                 "record": False})
    assert (await ended(daemon, first["call_uuid"]))["status"] == "completed"
    error = await refused(daemon, {"leg_a": AGENT_2, "leg_b": CUSTOMER, "time_limit": 1},
                          429, "attempt-cap-reached", "leg_b")
    assert error["details"]["number"] == CUSTOMER and error["details"]["cap"] == 1
    assert 86400 - 120 <= int(error["retry_after_header"]) <= 86400
    await refused(daemon, {"leg_a": AGENT, "leg_b": CUSTOMER_2, "time_limit": 1},
                  429, "attempt-cap-reached", "leg_a")


# ---------------------------------------------------------------- limits per agent and trunk


@pytest.mark.lab
async def test_an_agent_on_a_call_is_at_its_limit_of_one(
        start_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = start_daemon(CALLCONNECT_LIMITS_AGENT_MAX_ACTIVE="1")
    await daemon.ready()
    live = await place(daemon, {"leg_a": AGENT, "leg_b": CUSTOMER, "time_limit": 4,
                                "record": False})
    async with api(daemon) as client:
        await wait_for_state(client, live["call_uuid"], "bridged")
    error = await refused(daemon, {"leg_a": AGENT, "leg_b": CUSTOMER_2, "time_limit": 1},
                          429, "agent-limit", "leg_a")
    assert error["details"]["agent"] == AGENT and error["retry_after_header"] == "1"
    await ended(daemon, live["call_uuid"])
    again = await place(daemon, {"leg_a": AGENT, "leg_b": CUSTOMER_2, "time_limit": 1,
                                 "record": False})
    assert (await ended(daemon, again["call_uuid"]))["status"] == "completed"


@pytest.mark.lab
async def test_a_trunk_with_a_call_is_at_its_limit_of_one(
        start_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = start_daemon(CALLCONNECT_LIMITS_TRUNK_MAX_ACTIVE="1")
    await daemon.ready()
    live = await place(daemon, {"leg_a": AGENT, "leg_b": CUSTOMER, "time_limit": 4,
                                "record": False})
    async with api(daemon) as client:
        await wait_for_state(client, live["call_uuid"], "bridged")
    # Another agent, but through the same trunk (lab-answer-a).
    error = await refused(daemon, {"leg_a": AGENT_2, "leg_b": HANGS_UP, "time_limit": 1},
                          429, "trunk-limit", "leg_a")
    assert error["details"]["trunk"] == "lab-answer-a" and error["retry_after_header"] == "1"
    await ended(daemon, live["call_uuid"])
    again = await place(daemon, {"leg_a": AGENT_2, "leg_b": HANGS_UP, "time_limit": 1,
                                 "record": False})
    assert (await ended(daemon, again["call_uuid"]))["status"] == "completed"


@pytest.mark.lab
async def test_calls_started_per_second_on_a_trunk_are_limited(
        start_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = start_daemon(CALLCONNECT_LIMITS_TRUNK_CALLS_PER_SECOND="1")
    await daemon.ready()
    first = await place(daemon, {"leg_a": AGENT, "leg_b": CUSTOMER, "time_limit": 1,
                                 "record": False})
    error = await refused(daemon, {"leg_a": AGENT_2, "leg_b": HANGS_UP, "time_limit": 1},
                          429, "trunk-limit", "leg_a")
    assert error["details"]["rule"] == "limits.trunk_calls_per_second"
    assert error["retry_after_header"] == "1"
    await ended(daemon, first["call_uuid"])  # well over a second later
    second = await place(daemon, {"leg_a": AGENT_2, "leg_b": HANGS_UP, "time_limit": 1,
                                  "record": False})
    assert (await ended(daemon, second["call_uuid"]))["status"] == "completed"
