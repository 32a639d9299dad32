"""The API fuzzed from its own OpenAPI document (schemathesis; the document
the app itself serves at /openapi.json, built here the same way): the daemon
runs as a real process with its switch pointed at a port nobody listens on,
so no call is ever placed and no lab is needed. Every answer must conform to
the document, no request may get a 5xx other than the documented 503s, and
every error is JSON with an ``error_id``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from controller.api.openapi import document
from tests.api.switch_down import serving, switch_down_env
from tests.lab.conftest import TOKEN, DaemonProcess

# The 503s the API documents: the switch is down (always, here), the store
# failed, the daemon is draining, or a whisper could not be rendered.
DOCUMENTED_503 = {"switch-unavailable", "store-unavailable", "draining", "whisper-failed"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("api-fuzz")
    process = DaemonProcess(tmp / "store.sqlite3", tmp / "daemon.log", switch_down_env(
        tmp, CALLCONNECT_OUTBOUND_ALLOW_PRIVATE="false"))
    process.start()
    serving(process)
    yield process
    process.stop()


schema = schemathesis.openapi.from_dict(json.loads(document()))


def test_the_daemon_serves_the_document_fuzzed_here(daemon: DaemonProcess) -> None:
    assert httpx.get(f"{daemon.url}/openapi.json").json() == json.loads(document())


@schema.parametrize()
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_every_answer_conforms_and_every_error_has_an_id(case: Any, daemon: DaemonProcess) -> None:
    response = case.call(base_url=daemon.url, headers={"Authorization": f"Bearer {TOKEN}"},
                         timeout=10)
    case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                             response_schema_conformance])
    if response.status_code >= 400 and case.path != "/status":  # /status answers its report
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error_id"), str), response.text
        if response.status_code >= 500:
            assert response.status_code == 503 and body["error_id"] in DOCUMENTED_503, \
                f"{response.status_code} {response.text}\n{Path(daemon.log).read_text()[-3000:]}"
