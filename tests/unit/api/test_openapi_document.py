"""The API document as clients generate code from it: every operation named,
tagged and described; one ErrorId enum, from one table, and per operation
only the errors it answers; every webhook event specified; and stored
requests and results that match it."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from typing import Any, get_args

import pytest
from fastapi import FastAPI

import controller
from controller.api.app import named_routes_only
from controller.api.errors import NOT_ANSWERED, RETRY_AFTER, STATUS
from controller.api.openapi import document
from controller.calls.request import CallRequest, WebhookEvent
from controller.daemon.listener import request_as_dict
from controller.daemon.scheduler import _unplaced_result
from controller.errors import CallConnectError
from controller.store import IdempotencyKey, StoredCall
from tests.openapi_document import OPENAPI, OpenApiDocument, pointer

METHODS = ("get", "put", "post", "delete", "patch")


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, operation) for section in ("paths", "webhooks")
            for path, item in spec[section].items()
            for method, operation in item.items() if method in METHODS]


def test_the_checked_in_document_is_the_one_the_app_makes() -> None:
    assert json.loads(OPENAPI.read_text()) == json.loads(document()), \
        "docs/openapi.json is stale: run `make openapi` and commit it"


def test_every_operation_is_named_tagged_and_described() -> None:
    spec = json.loads(document())
    tags = {tag["name"]: tag for tag in spec["tags"]}
    assert all(tag.get("description") for tag in tags.values())
    ids = []
    for method, path, operation in operations(spec):
        where = f"{method} {path}"
        ids.append(operation["operationId"])
        assert re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", operation["operationId"]), where
        assert operation.get("summary") and operation.get("description"), where
        assert operation["tags"] and set(operation["tags"]) <= set(tags), where
    assert len(ids) == len(set(ids)), ids
    assert {t for _, _, o in operations(spec) for t in o["tags"]} == set(tags)


def test_an_operation_without_an_operation_id_cannot_be_added() -> None:
    app = FastAPI(generate_unique_id_function=named_routes_only)
    with pytest.raises(ValueError, match="give it an operation_id"):
        app.get("/v1/unnamed")(lambda: None)
    app.get("/v1/named", operation_id="getNamed")(lambda: None)
    app.get("/hidden", include_in_schema=False)(lambda: None)


def every_module() -> None:
    """Import all of controller/, so that every exception class is defined."""
    for module in pkgutil.walk_packages(controller.__path__, "controller."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)


def subclasses(cls: type[CallConnectError]) -> list[type[CallConnectError]]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in subclasses(child))]


def test_every_error_id_is_in_the_one_table_or_never_answered() -> None:
    spec = json.loads(document())
    assert spec["components"]["schemas"]["ErrorId"]["enum"] == sorted(STATUS)
    every_module()
    for exc in subclasses(CallConnectError):
        assert exc.error_id in STATUS or exc.error_id in NOT_ANSWERED, \
            f"{exc.__name__} ({exc.error_id}): add it to controller/api/errors.py's table"
    assert not NOT_ANSWERED & set(STATUS)


def test_each_operation_lists_its_error_ids_under_their_status_with_retry_after() -> None:
    spec = json.loads(document())
    listed = set()
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            if "allOf" not in schema:
                continue
            ids = schema["allOf"][1]["properties"]["error_id"]["enum"]
            listed.update(ids)
            assert {STATUS[i] for i in ids} == {int(status)}, f"{method} {path} {status}"
            assert ("Retry-After" in response.get("headers", {})) == bool(RETRY_AFTER & set(ids))
        if path != "/status" and "security" in operation:
            assert "401" in operation["responses"], f"{method} {path}"
    # The framework's own answers (no such path or method, a bug) belong to no operation.
    assert set(STATUS) - listed == {"not-found", "method-not-allowed", "internal-error"}
    place = spec["paths"]["/v1/calls"]["post"]["responses"]
    assert "Idempotency-Replayed" in place["202"]["headers"]


def test_every_webhook_event_is_specified() -> None:
    spec = json.loads(document())
    # call.incoming goes to a number's incoming_url, whose answer holds the call's actions.
    assert set(spec["webhooks"]) == {f"call.{event}" for event in get_args(WebhookEvent)} | {
        "call.incoming"}
    for name, item in spec["webhooks"].items():
        headers = {p["name"]: p["required"] for p in item["post"]["parameters"]}
        assert headers == {"webhook-id": True, "webhook-timestamp": True,
                           "webhook-signature": False}, name
        answers = {"200", "204", "default"} if name == "call.incoming" else {
            "2XX", "410", "default"}
        assert answers <= set(item["post"]["responses"]), name
    incoming = spec["webhooks"]["call.incoming"]["post"]["responses"]
    assert "actions" in str(incoming["200"]["content"])


def test_a_stored_request_matches_the_document() -> None:
    doc = OpenApiDocument()
    request = CallRequest.model_validate({
        "leg_a": "+27115550101", "strategy": "sequential", "max_attempts": 3,
        "leg_b": [{"to": "+27115550202", "ring_timeout": 15}, "group:sales"],
        "fallbacks": {"busy": {"dial": ["+27115550303"]}, "all_busy": {"queue": {"group": "sales"}}},
        "whisper": "Sales call", "metadata": {"lead": {"id": 7}}, "calling_days": ["mon"]})
    doc.component("StoredRequest", request_as_dict(request, IdempotencyKey("lead-7")))
    doc.component("StoredRequest", request_as_dict(CallRequest(leg_a="1", leg_b="2"), None))
    with pytest.raises(Exception, match="colour"):
        doc.component("StoredRequest", {**request_as_dict(request, None), "colour": "red"})


def test_the_result_of_a_call_never_placed_matches_the_document() -> None:
    """A scheduled call closed before its window opened (the placed calls'
    results are checked in the scenario runs, tests/esl and tests/lab)."""
    stored = StoredCall(call_id="c1", created_at=1000.0, updated_at=1000.0, state="scheduled",
                        status=None, request=request_as_dict(CallRequest(
                            leg_a="+27115550101", leg_b=["+27115550202", "+27115550303"],
                            metadata={"crm": 1}), None),
                        snapshot={"scheduled_for": 2000.0, "reason": "outside calling hours"})
    result = _unplaced_result(stored, "canceled", "canceled over the API", "api", 1500.0)
    doc = OpenApiDocument()
    doc.component("CallResult", result)
    doc.webhook({"type": "call.completed", "timestamp": 1500.0, "data": result})
    with pytest.raises(Exception, match="'maybe' is not one of"):
        doc.component("CallResult", {**result, "status": "maybe"})
    assert pointer("paths", "/v1/calls", "post") == "/paths/~1v1~1calls/post"
