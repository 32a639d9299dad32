"""The REST API: place, watch and end calls; fetch recordings; agent groups;
the do-not-call list; /status and /metrics. Every error is JSON with a stable
``error_id``, a message and details; a validation error names the field.
Refused requests are logged with the error and the field, never with the
request's token or body.

Each feature is a folder (its routes and schemas); all of them reach the
daemon through :class:`controller.api.interface.Operations` only."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from controller import __version__
from controller.api.calls.routes import routes as call_routes
from controller.api.dnc.routes import routes as dnc_routes
from controller.api.errors import error
from controller.api.groups.routes import routes as group_routes
from controller.api.interface import Operations
from controller.api.status.routes import routes as status_routes
from controller.store import StoreError

log = structlog.get_logger(__name__)


class Unauthorized(Exception):
    pass


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


def create_app(ops: Operations) -> FastAPI:
    app = FastAPI(title="callconnect", version=__version__,
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

    def authorized(credentials: Credentials) -> str:
        """The request's bearer token, once it is one of ours."""
        token = credentials.credentials if credentials else ""
        if not any(hmac.compare_digest(token.encode(), known.encode())
                   for known in ops.api_tokens):
            raise Unauthorized
        return token

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        response = error(401, "unauthorized", "a valid bearer token is required")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

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
        return error(503, exc.error_id, exc.message, **exc.details)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug: still a JSON error with an id, and the traceback in the log.
        log.error("api.internal_error", path=request.url.path, error=repr(exc), exc_info=exc)
        return error(500, "internal-error", "the controller failed to handle this request; "
                     "the log has the details")

    caller = Depends(authorized)
    auth = [caller]
    app.include_router(call_routes(ops, auth, caller))
    app.include_router(group_routes(ops, auth))
    app.include_router(dnc_routes(ops, auth))
    app.include_router(status_routes(ops))
    return app
