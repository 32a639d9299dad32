"""PUT/GET/DELETE /v1/numbers/{number} and GET /v1/numbers, on the real
daemon process with its switch down (nothing is dialed, no lab is needed):
the config's numbers are read only, the API's are kept in the store across
a restart, and every refusal names its field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.switch_down import serving, switch_down_env
from tests.lab.conftest import TOKEN, DaemonProcess

CONFIG_NUMBER = "+27115550900"
CONFIG = f"""
[outbound]
allow_private = true

[numbers."{CONFIG_NUMBER}"]
actions = [{{ type = "connect", to = "group:lab-desk", whisper = "Incoming sales call" }}]
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    tmp = tmp_path_factory.mktemp("numbers")
    config = tmp / "callconnect.toml"
    config.write_text(CONFIG)
    yield tmp, config


def start(tmp: Path, config: Path) -> DaemonProcess:
    process = DaemonProcess(tmp / "store.sqlite3", tmp / "daemon.log", switch_down_env(tmp),
                            config=config)
    process.start()
    serving(process)
    return process


@pytest.fixture(scope="module")
def daemon(store: tuple[Path, Path]) -> Iterator[DaemonProcess]:
    process = start(*store)
    yield process
    process.stop()


def client(daemon: DaemonProcess) -> httpx.Client:
    return httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=10)


def refused(response: httpx.Response, status: int, error_id: str,
            field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error_id"] == error_id, body
    if field is not None:
        assert body["details"]["field"] == field, body
    return body


def test_a_config_number_is_shown_and_read_only(daemon: DaemonProcess) -> None:
    with client(daemon) as api:
        shown = api.get("/v1/numbers/%2B27115550900")
        assert shown.status_code == 200, shown.text
        assert shown.json() == {
            "number": CONFIG_NUMBER, "source": "config", "incoming_url": "",
            "actions": [{"type": "connect", "to": "group:lab-desk",
                         "whisper": "Incoming sales call"}],
            "fallback_actions": [], "incoming_timeout": 5.0, "idle_timeout": 30,
            "webhook_url": "", "webhook_events": ["completed"], "metadata": {}}
        # Local format reads as calls.default_region (ZA) reads it.
        assert api.get("/v1/numbers/011 555 0900").json()["number"] == CONFIG_NUMBER
        body = refused(api.put("/v1/numbers/0115550900", json={"actions": [{"type": "hangup"}]}),
                       409, "number-from-config")
        assert body["details"]["number"] == CONFIG_NUMBER
        refused(api.delete(f"/v1/numbers/{CONFIG_NUMBER}"), 409, "number-from-config")
        assert api.get(f"/v1/numbers/{CONFIG_NUMBER}").json()["source"] == "config"


def test_an_api_number_is_made_changed_listed_and_deleted(daemon: DaemonProcess) -> None:
    with client(daemon) as api:
        made = api.put("/v1/numbers/011 555 0901", json={
            "incoming_url": "http://127.0.0.1:9/incoming", "incoming_timeout": 2,
            "fallback_actions": [{"type": "hangup", "reason": "no answer from the CRM"}],
            "webhook_events": ["completed"], "metadata": {"line": "support"}})
        assert made.status_code == 200, made.text
        assert made.json()["number"] == "+27115550901"
        assert (made.json()["source"], made.json()["incoming_timeout"]) == ("api", 2.0)
        changed = api.put("/v1/numbers/+27115550901", json={"actions": [{"type": "hangup"}]})
        assert changed.json()["incoming_url"] == "" and changed.json()["actions"] == [
            {"type": "hangup"}]
        assert api.get("/v1/numbers/+27115550901").json() == changed.json()
        assert api.delete("/v1/numbers/+27115550901").status_code == 204
        refused(api.get("/v1/numbers/+27115550901"), 404, "number-not-found")
        refused(api.delete("/v1/numbers/+27115550901"), 404, "number-not-found")


def test_the_list_is_in_order_and_paged(daemon: DaemonProcess) -> None:
    with client(daemon) as api:
        for n in (5, 3, 4):
            assert api.put(f"/v1/numbers/+2711555091{n}",
                           json={"actions": [{"type": "hangup"}]}).status_code == 200
        first = api.get("/v1/numbers", params={"limit": 2}).json()
        assert [n["number"] for n in first["numbers"]] == [CONFIG_NUMBER, "+27115550913"]
        rest = api.get("/v1/numbers", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert [n["number"] for n in rest["numbers"]] == ["+27115550914", "+27115550915"]
        assert rest["next_cursor"] is None
        refused(api.get("/v1/numbers", params={"cursor": "lead-4711"}), 400, "invalid-field",
                "cursor")
        for n in (3, 4, 5):
            assert api.delete(f"/v1/numbers/+2711555091{n}").status_code == 204


@pytest.mark.parametrize(("body", "field"), [
    ({"actions": [{"type": "hangup"}], "colour": "red"}, "colour"),
    ({"actions": [{"type": "hangup"}], "incoming_timeout": 0}, "incoming_timeout"),
    ({"actions": [{"type": "hangup"}], "incoming_timeout": 31}, "incoming_timeout"),
    ({"actions": [{"type": "hangup"}], "idle_timeout": "30"}, "idle_timeout"),
    ({"actions": [{"type": "hangup"}] * 51}, "actions"),
    ({"actions": [{"type": "hangup"}], "webhook_events": ["everything"]}, "webhook_events[0]"),
    ({}, "actions"),
    ({"actions": [{"type": "hangup"}, {"type": "dance"}]}, "actions[1].type"),
    ({"actions": ["hangup"]}, "actions[0]"),
    ({"incoming_url": "ftp://crm.example.com/in"}, "incoming_url"),
    ({"incoming_url": "http://127.0.0.1:9/in", "actions": [{"type": "hangup"}]}, "actions"),
    ({"actions": [{"type": "hangup"}], "fallback_actions": [{"type": "hangup"}]},
     "fallback_actions"),
    ({"actions": [{"type": "hangup"}], "metadata": {"custom_field": 7}}, "metadata.custom_field"),
])
def test_a_bad_body_is_refused_naming_the_field_and_nothing_is_kept(
        daemon: DaemonProcess, body: dict[str, Any], field: str) -> None:
    with client(daemon) as api:
        refused(api.put("/v1/numbers/+27115550920", json=body), 400, "invalid-field", field)
        refused(api.get("/v1/numbers/+27115550920"), 404, "number-not-found")


@pytest.mark.parametrize("number", ["+2711", "sales", "0115550900x", "1" * 40])
def test_a_path_that_is_no_number_is_refused(daemon: DaemonProcess, number: str) -> None:
    with client(daemon) as api:
        response = api.get(f"/v1/numbers/{number}")
        assert response.status_code == 400, response.text
        assert response.json()["error_id"] in ("invalid-number", "invalid-field")
        assert response.json()["details"]["field"] == "number"


def test_numbers_need_the_token(daemon: DaemonProcess) -> None:
    refused(httpx.get(f"{daemon.url}/v1/numbers", timeout=10), 401, "unauthorized")


def test_api_numbers_outlive_a_restart(store: tuple[Path, Path],
                                       daemon: DaemonProcess) -> None:
    with client(daemon) as api:
        assert api.put("/v1/numbers/+27115550930", json={
            "actions": [{"type": "connect", "to": "+27115550202"}],
            "idle_timeout": 60}).status_code == 200
    daemon.stop()
    again = start(*store)
    try:
        with client(again) as api:
            kept = api.get("/v1/numbers/+27115550930").json()
            assert (kept["source"], kept["idle_timeout"]) == ("api", 60)
            assert api.get(f"/v1/numbers/{CONFIG_NUMBER}").json()["source"] == "config"
    finally:
        again.stop()
