"""What the API refuses before anyone is called, and what the daemon refuses to
start with, seen from outside: the daemon runs as a real process with its
switch pointed at a port nobody listens on (so nothing is ever dialed and no
lab is needed), driven over HTTP."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.config import load_config
from controller.webhooks.signing import Signer
from tests.api.switch_down import serving, switch_down_env
from tests.lab.conftest import LAB_CONFIG, SIGNING_SECRET, TOKEN, DaemonProcess
from tests.openapi_document import OpenApiDocument

LEG_A, LEG_B = "+27115550101", "+27115550202"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("refusals")
    process = DaemonProcess(tmp / "store.sqlite3", tmp / "daemon.log", switch_down_env(tmp))
    process.start()
    serving(process)
    yield process
    process.stop()


def client(daemon: DaemonProcess) -> httpx.Client:
    return httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=10)


def refused(response: httpx.Response, status: int, error_id: str,
            field: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert (body["error_id"], body["details"].get("field")) == (error_id, field), body
    return body


def call(daemon: DaemonProcess, **fields: Any) -> httpx.Response:
    with client(daemon) as api:
        return api.post("/v1/calls", json={"leg_a": LEG_A, "leg_b": LEG_B, "record": False,
                                           **fields})


# ---------------------------------------------------------------- SIP URIs

@pytest.mark.parametrize("uri", ["sip:a'b@c.com", "sip:a!b@c.com", "sip:a@[c.com]"])
def test_a_sip_uri_the_switch_would_refuse_is_refused_before_anyone_is_called(
        daemon: DaemonProcess, uri: str) -> None:
    body = refused(call(daemon, leg_b=uri), 400, "invalid-number", "leg_b")
    assert "not a SIP URI" in body["message"]
    refused(call(daemon, leg_a=uri), 400, "invalid-number", "leg_a")
    refused(call(daemon, leg_b=[LEG_B, {"to": uri}]), 400, "invalid-number", "leg_b[1]")
    with client(daemon) as api:
        refused(api.put("/v1/groups/desk", json={"agents": [uri]}), 400, "invalid-number",
                "agents[0]")


# ---------------------------------------------------------------- stored text

@pytest.mark.parametrize("reason", ["asked\r\nX-Forged: 1", "\u202eevil", "zero\u200bwidth",
                                    "bell\x07"])
def test_a_dnc_reason_with_control_or_bidi_characters_is_refused_and_not_kept(
        daemon: DaemonProcess, reason: str) -> None:
    with client(daemon) as api:
        refused(api.put("/v1/dnc/+27115550909", json={"reason": reason}), 400, "invalid-field",
                "reason")
        assert api.get("/v1/dnc/+27115550909").status_code == 404


@pytest.mark.parametrize("name", ["Sales", "%EF%BD%93ales", "s%D0%B0les", "%2E%2E", "sales.eu",
                                  "x" * 65])
def test_a_group_name_outside_a_to_z_digits_underscore_dash_is_refused(
        daemon: DaemonProcess, name: str) -> None:
    with client(daemon) as api:
        body = refused(api.put(f"/v1/groups/{name}", json={"agents": [LEG_B]}), 400,
                       "invalid-field", "name")
        assert "is not a group name" in body["message"], body
    target = refused(call(daemon, leg_b="group:" + httpx.URL("/" + name).path[1:]), 400,
                     "invalid-field", "leg_b")
    assert "is not a group name" in target["message"], target


# ---------------------------------------------------------------- lax types

@pytest.mark.parametrize(("fields", "field"), [
    ({"ring_timeout": True}, "ring_timeout"),
    ({"ring_timeout": "30"}, "ring_timeout"),
    ({"ring_timeout": 30.0}, "ring_timeout"),
    ({"record": "yes"}, "record"),
    ({"record": 1}, "record"),
    ({"leg_b": [{"to": LEG_B, "ring_timeout": True}]}, "leg_b"),
    ({"whisper": 5}, "whisper"),
    ({"max_attempts": True}, "max_attempts"),
    ({"calling_hours": "08:00-21:00\n"}, "calling_hours"),
    ({"calling_hours": " 08:00-21:00"}, "calling_hours"),
    ({"calling_days": ["mon\n"]}, "calling_days"),
])
def test_lax_types_and_loose_strings_are_refused(daemon: DaemonProcess, fields: dict[str, Any],
                                                 field: str) -> None:
    response = call(daemon, **fields)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error_id"] == "invalid-field", body
    # A nested field is named by its path (leg_b[0].TargetOption.ring_timeout).
    assert re.split(r"[.\[]", body["details"]["field"])[0] == field, body


def test_what_json_naturally_gives_is_accepted(daemon: DaemonProcess) -> None:
    # Ints for ints, an int or a float for a float, strings for strings: the
    # request passes every rule and is refused only because the switch is down.
    response = call(daemon, ring_timeout=20, time_limit=60, confirm_key="1", confirm_timeout=5,
                    calling_hours="00:00-24:00", calling_days=["mon", "tue", "wed", "thu", "fri",
                                                               "sat", "sun"],
                    leg_b=[{"to": LEG_B, "ring_timeout": 15}], strategy="sequential")
    refused(response, 503, "switch-unavailable", None)
    with client(daemon) as api:
        for hours in (8, 8.5):
            group = api.put("/v1/groups/desk-2", json={"agents": [LEG_B], "ring_timeout": 20,
                                                       "calls_period_hours": hours,
                                                       "strategy": "least-calls"})
            assert group.status_code == 200, group.text
        refused(api.put("/v1/groups/desk-2", json={"agents": [LEG_B], "ring_timeout": True}),
                400, "invalid-field", "ring_timeout")
        refused(api.put("/v1/groups/desk-2", json={"agents": [LEG_B], "calls_period_hours": "8"}),
                400, "invalid-field", "calls_period_hours")


# ---------------------------------------------------------------- the whisper

# ---------------------------------------------------------------- signing

SHORT_SECRET = "whsec_" + base64.b64encode(b"x" * 23).decode()


@pytest.mark.parametrize(("env", "says"), [
    ({"CALLCONNECT_WEBHOOK_SIGNING_SECRET": "", "CALLCONNECT_WEBHOOK_UNSIGNED": "false"},
     "webhook.unsigned = true"),
    ({"CALLCONNECT_WEBHOOK_SIGNING_SECRET": "whsec_eA=="}, "decodes to 1 bytes"),
    ({"CALLCONNECT_WEBHOOK_SIGNING_SECRET": SHORT_SECRET}, "decodes to 23 bytes"),
])
def test_the_daemon_will_not_start_without_a_usable_signing_secret(
        tmp_path: Path, env: dict[str, str], says: str) -> None:
    process = DaemonProcess(tmp_path / "store.sqlite3", tmp_path / "daemon.log",
                            switch_down_env(tmp_path, **env))
    process.start()
    try:
        assert process.wait(timeout=30) == 2
    finally:
        process.stop()
    log = process.log.read_text()
    assert "webhook.signing_secret" in log and says in log, log[-2000:]
    secret = env["CALLCONNECT_WEBHOOK_SIGNING_SECRET"]
    assert not secret or secret.removeprefix("whsec_") not in log  # never shown


def test_the_daemon_sends_unsigned_webhooks_only_when_asked(tmp_path: Path) -> None:
    process = DaemonProcess(tmp_path / "store.sqlite3", tmp_path / "daemon.log", switch_down_env(
        tmp_path, CALLCONNECT_WEBHOOK_SIGNING_SECRET="", CALLCONNECT_WEBHOOK_UNSIGNED="true"))
    process.start()
    try:
        serving(process)
    finally:
        process.stop()


def test_the_lab_configs_meet_the_signing_rules() -> None:
    # The lab tests sign with SIGNING_SECRET; a daemon run with a lab config
    # alone sends unsigned webhooks, as the configs say.
    environ = {"CALLCONNECT_WEBHOOK_SIGNING_SECRET": SIGNING_SECRET}
    assert Signer(load_config(LAB_CONFIG, environ).webhook.daemon_signing_secret()).signs
    for path in (LAB_CONFIG, LAB_CONFIG.parent / "docker" / "callconnect.toml"):
        assert load_config(path, environ={}).webhook.daemon_signing_secret() is None


# ---------------------------------------------------------------- actions


@pytest.mark.parametrize(("fields", "field"), [
    ({"actions": [{"type": "hangup"}, {"type": "gather", "max_digits": 33}]},
     "actions[1].max_digits"),
    ({"actions": [{"type": "play", "text": "hi"}, {"type": "dial"}]}, "actions[1].type"),
    ({"actions": [{"type": "gather", "valid_digits": "1x"}]}, "actions[0].valid_digits"),
    ({"leg_b": LEG_B, "actions": [{"type": "hangup"}]}, "actions"),  # one of the two
    ({}, "actions"),
])
def test_a_single_leg_calls_actions_are_checked_before_anything_is_dialed(
        daemon: DaemonProcess, fields: dict[str, Any], field: str) -> None:
    with client(daemon) as api:
        response = api.post("/v1/calls", json={"leg_a": LEG_A, "record": False, **fields})
    refused(response, 400, "invalid-field", field)
    OpenApiDocument().check("post", "/v1/calls", response)


def test_actions_for_a_call_are_checked_and_an_unknown_call_is_named(daemon: DaemonProcess) -> None:
    path = "/v1/calls/{call_id}/actions"
    with client(daemon) as api:
        bad = api.post("/v1/calls/c1/actions",
                       json={"actions": [{"type": "pause", "seconds": 1},
                                         {"type": "pause", "seconds": 0}]})
        empty = api.post("/v1/calls/c1/actions", json={"actions": []})
        unknown = api.post("/v1/calls/nobody/actions", json={"actions": [{"type": "hangup"}]})
    refused(bad, 400, "invalid-field", "actions[1].seconds")
    refused(empty, 400, "invalid-field", "actions")
    refused(unknown, 404, "call-not-found", None)
    for response in (bad, empty, unknown):
        OpenApiDocument().check("post", path, response)
