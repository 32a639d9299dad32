"""One connection to the daemon: its URL and token, a timeout on every
request, and every failure turned into an :class:`ApiError` with an
``error_id`` and a message a user can act on. The token goes only into the
Authorization header: no message, error or repr here carries it."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any
from urllib.parse import quote

import httpx

URL_ENV, TOKEN_ENV = "CALLCONNECT_URL", "CALLCONNECT_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 10.0
# The daemon's JSON answers are far smaller (a page of 500 calls without
# timelines); past this the answer is not the daemon's.
MAX_JSON_BYTES = 32 * 1024 * 1024


# Following cursors stops after this many pages: a cursor that never ends is
# the daemon's bug, not a reason to loop forever.
MAX_PAGES = 10_000


class UsageError(Exception):
    """Bad flags or environment: nothing was sent."""


class ApiError(Exception):
    """The daemon refused, or could not be reached. ``body`` is the API's own
    error JSON when it sent one."""

    def __init__(self, error_id: str, message: str, *, http_status: int | None = None,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message
        self.http_status = http_status
        self.details = dict(details or {})

    def as_dict(self) -> dict[str, Any]:
        return {"error_id": self.error_id, "message": self.message, "details": self.details}


def connection_settings(url: str | None, token: str | None) -> tuple[str, str | None]:
    """The daemon's URL and token: the flags, else the environment, else the
    default URL and no token. A URL that is not http(s) or a token a header
    cannot carry is a usage error (the token is never echoed)."""
    url = url or os.environ.get(URL_ENV) or DEFAULT_URL
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UsageError(f"--url / {URL_ENV}: not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"--url / {URL_ENV}: {url!r} is not an http(s) URL with a host, "
                         f"e.g. {DEFAULT_URL}")
    if parsed.userinfo:
        raise UsageError(f"--url / {URL_ENV}: a URL with a user or password is refused; "
                         f"give the token with {TOKEN_ENV} or --token")
    if token is not None and (not token or not token.isascii() or not token.isprintable()
                              or " " in token):
        raise UsageError(f"--token / {TOKEN_ENV}: the token must be printable ASCII "
                         "without spaces (it is not shown here)")
    return url.rstrip("/"), token


def timeout_seconds(text: str) -> float:
    """--timeout: seconds each request may take."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds, more than 0 and at most 3600")
    return value


def segment(value: str) -> str:
    """A value as one URL path segment: '/', '+' and '%' cannot change the path."""
    return quote(value, safe="")


class Daemon:
    def __init__(self, url: str, token: str | None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
        self.token_given = token is not None
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout,
                                 follow_redirects=False)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def json(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
             body: Any = None, headers: Mapping[str, str] | None = None) -> Any:
        """The answer's JSON (None for 204), or the API's error raised."""
        with self._send(method, path, params=params, body=body, headers=headers) as response:
            if response.status_code == 204:
                return None
            return self._read_json(response)

    def page_items(self, path: str, params: Mapping[str, Any], key: str,
                   every_page: bool) -> tuple[list[Any], dict[str, Any]]:
        """The items under ``key`` of one page (or, with ``every_page``, of
        every page, following the cursors), and the last page read."""
        page = expect_dict(self.json("GET", path, params=params))
        items = expect_list(page.get(key), key)
        pages = 1
        while every_page and page.get("next_cursor"):
            if pages >= MAX_PAGES:
                raise ApiError("bad-response", f"the daemon gave over {MAX_PAGES} pages of {key}")
            page = expect_dict(self.json("GET", path,
                                         params={**params, "cursor": page["next_cursor"]}))
            items += expect_list(page.get(key), key)
            pages += 1
        return items, page

    def download(self, path: str, into: IO[bytes]) -> int:
        """Stream a file the daemon serves into ``into``; the bytes written."""
        written = 0
        with self._send("GET", path, headers={"Accept": "*/*"}) as response:
            for chunk in response.iter_bytes():
                into.write(chunk)
                written += len(chunk)
        return written

    @contextmanager
    def _send(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              body: Any = None, headers: Mapping[str, str] | None = None,
              ) -> Iterator[httpx.Response]:
        """The answer, once it is known not to be an error; a network failure
        while it is read (in the caller's block) is an ApiError too."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            with self.http.stream(method, path, params=query, json=body,
                                  headers=headers) as response:
                if response.status_code >= 400:
                    raise self._refusal(response)
                if response.status_code >= 300:
                    raise ApiError("unexpected-redirect", f"{method} {path}: the daemon at "
                                   f"{self.url} answered {response.status_code} (a redirect); "
                                   "check --url", http_status=response.status_code)
                yield response
        except httpx.HTTPError as exc:
            raise self._network_error(exc) from None

    def _read_json(self, response: httpx.Response) -> Any:
        data = bytearray()
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) > MAX_JSON_BYTES:
                raise ApiError("bad-response", f"{self.url} sent over {MAX_JSON_BYTES} bytes; "
                               "is --url the callconnect daemon?", http_status=response.status_code)
        try:
            return json.loads(data)
        except ValueError:
            raise ApiError("bad-response", f"{self.url} answered HTTP {response.status_code} "
                           "that is not JSON; is --url the callconnect daemon?",
                           http_status=response.status_code) from None

    def _refusal(self, response: httpx.Response) -> ApiError:
        status = response.status_code
        try:
            body = self._read_json(response)
        except ApiError:
            body = None
        if not (isinstance(body, dict) and isinstance(body.get("error_id"), str)):
            return ApiError("bad-response", f"{self.url} answered HTTP {status} without an "
                            "error_id; is --url the callconnect daemon?", http_status=status)
        message = str(body.get("message", ""))
        if status == 401:
            message += (" (the token was refused)" if self.token_given else
                        f" (no token given: set {TOKEN_ENV} or pass --token)")
        details = body.get("details")
        return ApiError(body["error_id"], message, http_status=status,
                        details=details if isinstance(details, dict) else None)

    def _network_error(self, exc: httpx.HTTPError) -> ApiError:
        if isinstance(exc, httpx.TimeoutException):
            return ApiError("daemon-timeout", f"the daemon at {self.url} did not answer within "
                            f"{self.timeout:g} s (--timeout)")
        # httpx's messages name the failure (refused, unresolvable host), never a header.
        return ApiError("daemon-unreachable", f"cannot reach the daemon at {self.url}: "
                        f"{str(exc) or type(exc).__name__}; is `callconnect daemon` running there?")


def mapping(value: Any) -> dict[str, Any]:
    """A JSON object of the answer, or {} where there is none (null, or a table
    column the daemon left out)."""
    return value if isinstance(value, dict) else {}


def expect_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError("bad-response", "the daemon answered JSON of an unexpected shape "
                       "(an object was expected); is --url the callconnect daemon?")
    return value


def expect_list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise ApiError("bad-response", f"the daemon's answer has no list {name!r}; "
                       "is --url the callconnect daemon?")
    return value
