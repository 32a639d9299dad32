"""The webhook delivery routes' refusals, seen from outside: the real daemon
with its switch down (no call is needed for these), driven over HTTP. The
way through, from a 410 to a redelivery, is in tests/esl/test_esl_daemon.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.switch_down import serving, switch_down_env
from tests.lab.conftest import TOKEN, DaemonProcess

ROUTES = [("GET", "/v1/webhooks/deliveries"), ("POST", "/v1/webhooks/deliveries/evt_1/redeliver"),
          ("GET", "/v1/webhooks/disabled-urls"), ("DELETE", "/v1/webhooks/disabled-urls/" + "0" * 32)]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp: Path = tmp_path_factory.mktemp("deliveries")
    process = DaemonProcess(tmp / "store.sqlite3", tmp / "daemon.log", switch_down_env(tmp))
    process.start()
    serving(process)
    yield process
    process.stop()


def call(daemon: DaemonProcess, method: str, path: str, token: str | None = TOKEN,
         **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, daemon.url + path, headers=headers, params=params, timeout=10)


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_every_route_needs_the_token(daemon: DaemonProcess, method: str, path: str,
                                     token: str | None) -> None:
    response = call(daemon, method, path, token)
    assert response.status_code == 401, response.text
    assert response.json()["error_id"] == "unauthorized"


def test_unknown_ids_are_404_with_their_own_error_id(daemon: DaemonProcess) -> None:
    missing = call(daemon, "POST", "/v1/webhooks/deliveries/evt_nope/redeliver")
    assert missing.status_code == 404, missing.text
    assert (missing.json()["error_id"], missing.json()["details"]) == (
        "delivery-not-found", {"event_id": "evt_nope"})
    unknown = call(daemon, "DELETE", "/v1/webhooks/disabled-urls/abc123")
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["error_id"] == "disabled-url-not-found"


@pytest.mark.parametrize("path", ["/v1/webhooks/deliveries", "/v1/webhooks/disabled-urls"])
@pytest.mark.parametrize(("name", "value"), [("cursor", "not-a-cursor"), ("cursor", "WzEsIDJd"),
                                             ("cursor", "x" * 201), ("limit", "0"), ("limit", "501")])
def test_a_bad_cursor_or_limit_is_400_naming_it(daemon: DaemonProcess, path: str, name: str,
                                                value: str) -> None:
    response = call(daemon, "GET", path, **{name: value})
    assert response.status_code == 400, response.text
    assert (response.json()["error_id"], response.json()["details"]["field"]) == ("invalid-field", name)


def test_an_unknown_state_is_400_and_empty_lists_are_200(daemon: DaemonProcess) -> None:
    response = call(daemon, "GET", "/v1/webhooks/deliveries", state="gone")
    assert response.status_code == 400, response.text
    assert response.json()["details"]["field"] == "state"
    listed = call(daemon, "GET", "/v1/webhooks/deliveries", state="disabled", call_id="c1", limit="500")
    assert listed.status_code == 200 and listed.json() == {"deliveries": [], "next_cursor": None}
    urls = call(daemon, "GET", "/v1/webhooks/disabled-urls")
    assert urls.status_code == 200 and urls.json() == {"urls": [], "next_cursor": None}
