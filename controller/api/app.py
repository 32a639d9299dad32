"""The REST API: place, watch and end calls; fetch recordings; agent groups;
numbers that take inbound calls; the do-not-call list; webhook deliveries; /status and /metrics; optionally
/docs. Every error is JSON with a stable ``error_id``, a message and
details; a validation error names the field. Refused requests are logged
with the error and the field, never with the request's token or body.

Each feature is a folder (its routes and schemas); all of them reach the
daemon through :class:`controller.api.interface.Operations` only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from controller import __version__
from controller.actions.spec import error_path
from controller.api.calls.routes import routes as call_routes
from controller.api.dnc.routes import routes as dnc_routes
from controller.api.docs import ASSETS, DOCS_PATHS, add_docs
from controller.api.errors import ApiErrorId, error, error_schemas, failure
from controller.api.groups.routes import routes as group_routes
from controller.api.guard import RequestGuard
from controller.api.interface import Operations
from controller.api.numbers.routes import routes as number_routes
from controller.api.recordings.routes import routes as recording_routes
from controller.api.status.routes import routes as status_routes
from controller.api.webhooks.events import webhooks
from controller.api.webhooks.routes import routes as webhook_routes
from controller.config import ApiConfig
from controller.errors import InvalidField, InvalidRequest
from controller.recording_links import LINK_PATH
from controller.store import StoreError

log = structlog.get_logger(__name__)


OPENAPI_URL = "/openapi.json"
BEARER = HTTPBearer(auto_error=False)
# The framework's own errors: an unreadable body, no such path or method.
HTTP_ERRORS = {400: InvalidRequest.error_id, 404: ApiErrorId.NOT_FOUND.value,
               405: ApiErrorId.METHOD_NOT_ALLOWED.value}
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


async def bearer_token(credentials: Credentials) -> str:
    """The request's token (RequestGuard has checked it already). Async only
    so that FastAPI calls it on the loop, not through its thread pool."""
    return credentials.credentials if credentials else ""


TAGS = [
    {"name": "calls", "description": "Place a call connect (leg A, whisper, leg B, bridge, "
                                     "record), watch it, end it, fetch its recording"},
    {"name": "groups", "description": "Agent groups that a call's leg B can name (group:NAME): "
                                      "the config's, read only, and the API's"},
    {"name": "numbers", "description": "Numbers that take inbound calls, and what each does "
                                       "with them: the config's, read only, and the API's"},
    {"name": "dnc", "description": "The do-not-call list: compliance.dnc_file's numbers, read "
                                   "only, and the API's"},
    {"name": "webhooks", "description": "Webhook deliveries kept by the outbox: list them, send "
                                        "one again, re-enable URLs a 410 Gone disabled"},
    {"name": "status", "description": "Health and metrics, for supervisors and Prometheus"},
    {"name": "webhook events", "description": "What the daemon POSTs to webhook URLs, signed "
                                              "the Standard Webhooks way"},
]
DESCRIPTION = """Self-hosted call connect: leg A, whisper, leg B, bridge, record, report.

Every operation but getStatus and getMetrics needs `Authorization: Bearer <token>` (a token
from api.tokens); without a valid one the answer is 401 `unauthorized`, before the body is read.
Request bodies are JSON (`Content-Type: application/json`), read strictly; any body over
api.max_body_bytes gets 413 `body-too-large`.

Every error is JSON, `{"error_id", "message", "details"}`, with a stable `error_id`
(`ErrorId`); each operation lists the ones it answers. A validation error is 400 and names
the field in `details.field`. An unknown path is 404 `not-found`, a wrong method 405
`method-not-allowed`, and a bug 500 `internal-error`."""


def named_routes_only(route: APIRoute) -> str:
    """Every documented operation names its operationId (FastAPI's generated
    ones, like place_call_v1_calls_post, make clients' method names ugly)."""
    if route.include_in_schema:
        raise ValueError(f"{route.path} {sorted(route.methods or ())}: give it an operation_id")
    return route.name


def create_app(ops: Operations, settings: ApiConfig | None = None) -> FastAPI:
    settings = settings or ApiConfig()
    app = FastAPI(title="callconnect", version=__version__, openapi_url=OPENAPI_URL,
                  docs_url=None, redoc_url=None, description=DESCRIPTION, openapi_tags=TAGS,
                  webhooks=webhooks(), generate_unique_id_function=named_routes_only)

    def openapi() -> dict[str, Any]:
        # Validation errors are answered 400 with an error_id, not FastAPI's 422.
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes,
                                 webhooks=app.webhooks.routes, tags=app.openapi_tags)
            for path in (*schema["paths"].values(), *schema["webhooks"].values()):
                for operation in path.values():
                    if "HTTPValidationError" in str(operation["responses"].get("422")):
                        del operation["responses"]["422"]
            for webhook in schema["webhooks"].values():
                # A receiver's answers are RECEIVER_ANSWERS (or INCOMING_ANSWERS),
                # not FastAPI's default 200.
                responses = webhook["post"]["responses"]
                if responses.get("200", {}).get("description") == "Successful Response":
                    del responses["200"]
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            components.update(error_schemas())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        field = error_path({**first, "loc": _in_request(first["loc"])})
        log.info("api.refused", path=request.url.path, error_id="invalid-field", field=field,
                 error=first["msg"])
        return error(InvalidField.error_id, f"{field or 'request'}: {first['msg']}",
                     field=field, errors=[{"field": error_path({**e, "loc": _in_request(e["loc"])}),
                                           "message": e["msg"]} for e in problems])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # The framework's own answers (no such path or method, an unreadable
        # body) carry an error_id like every other error.
        error_id = HTTP_ERRORS.get(exc.status_code)
        if error_id is None:  # nothing raises another: a bug, logged as one
            log.error("api.unexpected_http_error", path=request.url.path, status=exc.status_code)
            error_id = ApiErrorId.INTERNAL_ERROR
        response = error(error_id, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(StoreError)
    async def store_failed(request: Request, exc: StoreError) -> JSONResponse:
        ops.store_failed()
        return failure(exc)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug: still a JSON error with an id, and the traceback in the log.
        log.error("api.internal_error", path=request.url.path, error=repr(exc), exc_info=exc)
        return error(ApiErrorId.INTERNAL_ERROR, "the controller failed to handle this request; "
                     "the log has the details")

    # RequestGuard checks the token before the body is read. This declares the
    # scheme in the document, and hands the checked token to the routes that
    # need it (idempotency keys are scoped to it).
    caller = Depends(bearer_token)
    auth = [Security(BEARER)]
    app.include_router(call_routes(ops, auth, caller))
    app.include_router(group_routes(ops, auth))
    app.include_router(number_routes(ops, auth))
    app.include_router(dnc_routes(ops, auth))
    app.include_router(webhook_routes(ops, auth))
    app.include_router(status_routes(ops))
    app.include_router(recording_routes(ops))  # signed links: no token
    if settings.docs:
        add_docs(app)
    app.add_middleware(RequestGuard, tokens=lambda: ops.api_tokens,
                       public=public_paths(settings), max_body_bytes=settings.max_body_bytes)
    return app


def public_paths(settings: ApiConfig) -> Callable[[str], bool]:
    """Which paths answer without a token: /status and signed recording links
    (checked by their route) always; /metrics and the docs (with
    /openapi.json) unless their settings ask for one."""
    public = {"/status"}
    if not settings.metrics_auth:
        public.add("/metrics")
    if not settings.docs_auth:
        public.update((OPENAPI_URL, *DOCS_PATHS))

    def is_public(path: str) -> bool:
        return (path in public or path.startswith(LINK_PATH)
                or (not settings.docs_auth and path.startswith(ASSETS + "/")))

    return is_public


def _in_request(loc: Sequence[Any]) -> tuple[Any, ...]:
    """A field's path without the part of the request it came in (body, query, header)."""
    return tuple(part for part in loc if part not in ("body", "query", "header"))
