"""The checked-in OpenAPI document (docs/openapi.json) as tests check real
answers, results and webhook bodies against it: any schema in it, found by
its JSON pointer, validated as JSON Schema 2020-12 (what OpenAPI 3.1 uses),
its references resolved within the document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from referencing import Registry
from referencing.jsonschema import DRAFT202012

OPENAPI = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"
URN = "urn:callconnect-openapi"


def pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


class OpenApiDocument:
    def __init__(self) -> None:
        self.spec: dict[str, Any] = json.loads(OPENAPI.read_text())
        self.registry: Registry[Any] = Registry().with_resource(
            URN, DRAFT202012.create_resource(self.spec))

    def validate(self, at: str, instance: Any) -> None:
        """``instance`` against the schema at JSON pointer ``at``."""
        jsonschema.Draft202012Validator({"$ref": f"{URN}#{at}"},
                                        registry=self.registry).validate(instance)

    def component(self, name: str, instance: Any) -> None:
        self.validate(pointer("components", "schemas", name), instance)

    def webhook(self, body: dict[str, Any]) -> None:
        """A webhook body against the document's webhook of its type."""
        assert body["type"] in self.spec["webhooks"], f"undocumented webhook {body['type']}"
        self.validate(pointer("webhooks", body["type"], "post", "requestBody", "content",
                              "application/json", "schema"), body)

    def check(self, method: str, path: str, response: httpx.Response) -> None:
        """A real answer: its status is documented for the operation, and so
        are its JSON body (error ids included) and its headers."""
        operation = self.spec["paths"][path][method]
        status = str(response.status_code)
        documented = operation["responses"].get(status)
        assert documented is not None, f"{method} {path} answered undocumented {status}"
        for header in ("Retry-After", "Idempotency-Replayed"):
            if header in response.headers:
                assert header in documented.get("headers", {}), \
                    f"{method} {path} {status} sent undocumented {header}"
        if "application/json" in documented.get("content", {}):
            self.validate(pointer("paths", path, method, "responses", status, "content",
                                  "application/json", "schema"), response.json())
