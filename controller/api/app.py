"""The REST API: place, watch and end calls; fetch recordings; agent groups;
the do-not-call list; webhook deliveries; /status and /metrics; optionally
/docs. Every error is JSON with a stable ``error_id``, a message and
details; a validation error names the field. Refused requests are logged
with the error and the field, never with the request's token or body.

Each feature is a folder (its routes and schemas); all of them reach the
daemon through :class:`controller.api.interface.Operations` only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from controller import __version__
from controller.api.calls.routes import routes as call_routes
from controller.api.dnc.routes import routes as dnc_routes
from controller.api.docs import ASSETS, DOCS_PATHS, add_docs
from controller.api.errors import error
from controller.api.groups.routes import routes as group_routes
from controller.api.guard import RequestGuard
from controller.api.interface import Operations
from controller.api.recordings.routes import routes as recording_routes
from controller.api.status.routes import routes as status_routes
from controller.api.webhooks.routes import routes as webhook_routes
from controller.config import ApiConfig
from controller.recording_links import LINK_PATH
from controller.store import StoreError

log = structlog.get_logger(__name__)


OPENAPI_URL = "/openapi.json"
BEARER = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


def bearer_token(credentials: Credentials) -> str:
    """The request's token (RequestGuard has checked it already)."""
    return credentials.credentials if credentials else ""


def create_app(ops: Operations, settings: ApiConfig | None = None) -> FastAPI:
    settings = settings or ApiConfig()
    app = FastAPI(title="callconnect", version=__version__, openapi_url=OPENAPI_URL,
                  docs_url=None, redoc_url=None,
                  description="Self-hosted call connect: leg A, whisper, leg B, bridge, "
                              "record, report.")

    def openapi() -> dict[str, Any]:
        # Validation errors are answered 400 with an error_id, not FastAPI's 422.
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            for path in schema["paths"].values():
                for operation in path.values():
                    # FastAPI's own 422 only: POST /v1/calls answers a 422 of ours.
                    if "HTTPValidationError" in str(operation["responses"].get("422")):
                        del operation["responses"]["422"]
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "header"))
        log.info("api.refused", path=request.url.path, error_id="invalid-field", field=field,
                 error=first["msg"])
        return error(400, "invalid-field", f"{field or 'request'}: {first['msg']}",
                     field=field, errors=[{"field": ".".join(str(p) for p in e["loc"][1:]),
                                           "message": e["msg"]} for e in problems])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # The framework's own answers (no such path or method, an unreadable
        # body) carry an error_id like every other error.
        ids = {400: "invalid-request", 404: "not-found", 405: "method-not-allowed"}
        response = error(exc.status_code, ids.get(exc.status_code, f"http-{exc.status_code}"),
                         str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(StoreError)
    async def store_failed(request: Request, exc: StoreError) -> JSONResponse:
        ops.store_failed()
        return error(503, exc.error_id, exc.message, **exc.details)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug: still a JSON error with an id, and the traceback in the log.
        log.error("api.internal_error", path=request.url.path, error=repr(exc), exc_info=exc)
        return error(500, "internal-error", "the controller failed to handle this request; "
                     "the log has the details")

    # RequestGuard checks the token before the body is read. This declares the
    # scheme in the document, and hands the checked token to the routes that
    # need it (idempotency keys are scoped to it).
    caller = Depends(bearer_token)
    auth = [Security(BEARER)]
    app.include_router(call_routes(ops, auth, caller))
    app.include_router(group_routes(ops, auth))
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
