"""``callconnect call --url``: the call is placed through the daemon's
``POST /v1/calls``, so the daemon's do-not-call list, caps and limits apply
and the call is in its store like any other. With ``--wait`` the call's
timeline is followed until it ends, each step printed on stderr as the
standalone ``call --wait`` prints them, and the result on stdout.

Without ``--url`` (and without ``CALLCONNECT_URL``) ``call`` runs a
standalone controller of its own instead (controller/cli.py)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

from controller.client.http import (
    DEFAULT_TIMEOUT,
    TOKEN_ENV,
    URL_ENV,
    ApiError,
    Daemon,
    UsageError,
    connection_settings,
    expect_dict,
    expect_list,
    mapping,
    segment,
    timeout_seconds,
)
from controller.client.output import EXIT_INTERRUPTED, printable, usage

# The exit codes of `callconnect call`, standalone or through the daemon.
EXIT_OK, EXIT_CALL_FAILED, EXIT_BAD_INPUT, EXIT_UNREACHABLE, EXIT_REFUSED = 0, 1, 2, 3, 4
# A compliance rule refused the call: nothing was dialed, and asking again will not help.
COMPLIANCE_IDS = frozenset({"do-not-call", "outside-calling-hours", "attempt-cap-reached",
                            "destination-refused"})
POLL_SECONDS = 0.5
# While following a call the daemon may restart; unreachable for this long,
# the command gives up following (the call itself goes on in the daemon).
LOST_AFTER = 120.0

DESCRIPTION = f"""\
Connect leg A to leg B.

With --url (or {URL_ENV} set) the call is placed through the
daemon's REST API (POST /v1/calls): the daemon's do-not-call list, caps and
limits apply, and the call is in its store like any other.

Without --url and {URL_ENV}, this command runs a standalone
controller of its own, connected to the switch from --config: a running
daemon does not see its calls, and the daemon's do-not-call numbers, caps and
limits do not apply to them (the config's do-not-call file does)."""


def add_options(call: argparse.ArgumentParser) -> None:
    call.description = DESCRIPTION
    call.formatter_class = argparse.RawDescriptionHelpFormatter
    daemon = call.add_argument_group("through the daemon")
    daemon.add_argument("--url", help=f"the daemon's API, e.g. http://127.0.0.1:8080 (default: "
                        f"${URL_ENV}; with neither, a standalone controller places the call)")
    daemon.add_argument("--token", help=f"API token (default: ${TOKEN_ENV}, which keeps it out "
                        "of the process list)")
    daemon.add_argument("--timeout", type=timeout_seconds, default=DEFAULT_TIMEOUT,
                        help=f"seconds each request to the daemon may take (default "
                        f"{DEFAULT_TIMEOUT:g})")
    daemon.add_argument("--idempotency-key", help="sent again with the same call, the daemon "
                        "answers with the first call instead of placing another")
    daemon.add_argument("--standalone", action="store_true",
                        help=f"run a standalone controller even when ${URL_ENV} is set")


def through_daemon(args: argparse.Namespace) -> bool:
    return not args.standalone and bool(args.url or os.environ.get(URL_ENV))


def standalone_conflict(args: argparse.Namespace) -> str | None:
    """A flag of the other mode, named, or None."""
    if args.standalone and args.url:
        return "--standalone and --url: choose one"
    if not through_daemon(args) and args.idempotency_key:
        return f"--idempotency-key needs the daemon: give --url or set {URL_ENV}"
    if through_daemon(args) and args.log_file:
        return "--log-file is for the standalone controller; the daemon logs its calls itself"
    return None


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    """The call flags as POST /v1/calls's body; the daemon checks every field."""
    body: dict[str, Any] = {
        "leg_a": args.leg_a, "leg_b": args.leg_b[0] if len(args.leg_b) == 1 else args.leg_b,
        "strategy": args.strategy, "whisper_timing": args.whisper_timing}
    optional = {"whisper": args.whisper, "record": args.record, "ring_timeout": args.ring_timeout,
                "time_limit": args.time_limit, "caller_id": args.caller_id,
                "webhook_url": args.webhook, "confirm_key": args.confirm_key}
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


def place(args: argparse.Namespace) -> int:
    try:
        url, token = connection_settings(args.url, args.token)
    except UsageError as exc:
        return usage(str(exc))
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    with Daemon(url, token, args.timeout) as daemon:
        try:
            accepted = expect_dict(daemon.json("POST", "/v1/calls", body=request_body(args),
                                               headers=headers))
            if not args.wait:
                print(json.dumps(accepted, indent=2))
                return EXIT_OK if accepted.get("success") else EXIT_CALL_FAILED
            result = follow(daemon, str(accepted.get("call_uuid")))
        except ApiError as error:
            return refused(error)
        except KeyboardInterrupt:
            print("callconnect: interrupted; a call the daemon accepted goes on: "
                  "callconnect calls list --status active", file=sys.stderr)
            return EXIT_INTERRUPTED
    print(json.dumps(result, indent=2))
    return EXIT_OK if result.get("success") else EXIT_CALL_FAILED


class CtrlC:
    """SIGINT while a call is followed. The first is only counted: the loop
    hangs the call up at its next turn, so no request to the daemon is cut
    off halfway (an interrupted request can leave the connection pool
    unusable). The second stops following at once."""

    def __init__(self) -> None:
        self.presses = 0
        self.previous: Any = None

    def __enter__(self) -> CtrlC:
        self.previous = signal.signal(signal.SIGINT, self.pressed)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self.previous)

    def pressed(self, signum: int, frame: FrameType | None) -> None:
        self.presses += 1
        if self.presses > 1:
            raise KeyboardInterrupt


def follow(daemon: Daemon, call_id: str) -> dict[str, Any]:
    """Print each step of the call as the daemon records it; its result once it
    has ended. The first Ctrl-C hangs the call up (and follows it to its end),
    a second stops following."""
    shown, lost_since, hung_up = 0, None, False
    with CtrlC() as ctrl_c:
        while True:
            if ctrl_c.presses and not hung_up:
                hung_up = True
                print(f"interrupted: hanging up call {call_id} (Ctrl-C again to stop "
                      "following; the call goes on)", file=sys.stderr, flush=True)
                try:
                    daemon.json("POST", f"/v1/calls/{segment(call_id)}/hangup")
                except ApiError as error:
                    if error.error_id != "call-ended":
                        raise
            try:
                call = expect_dict(daemon.json("GET", f"/v1/calls/{segment(call_id)}"))
            except ApiError as error:
                if error.http_status is not None:
                    raise
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > LOST_AFTER:
                    raise ApiError(error.error_id, f"{error.message}; stopped following call "
                                   f"{call_id}, which goes on in the daemon: "
                                   f"callconnect calls show {call_id}") from None
                time.sleep(POLL_SECONDS)
                continue
            lost_since = None
            timeline = expect_list(call.get("timeline", []), "timeline")
            for item in map(mapping, timeline[shown:]):
                print_step(item, call.get("created_at"))
            shown = max(shown, len(timeline))
            if call.get("state") == "ended":
                return mapping(call.get("result"))
            time.sleep(POLL_SECONDS)


def print_step(item: dict[str, Any], created_at: Any) -> None:
    """One timeline entry, as the standalone `call --wait` prints a transition."""
    at = item.get("at")
    offset = at - created_at if isinstance(at, float | int) and isinstance(
        created_at, float | int) else 0.0
    data = mapping(item.get("data"))
    if item.get("kind") == "transition":
        what, reason = data.get("to"), data.get("reason")
    else:
        what, reason = item.get("kind"), ", ".join(f"{k}={v}" for k, v in data.items())
    print(f"[{offset:6.2f}s] {printable(what, limit=30):<11} {printable(reason, limit=None)}",
          file=sys.stderr, flush=True)


def refused(error: ApiError) -> int:
    """As the standalone call reports a refusal: JSON on stdout, the message on stderr."""
    print(json.dumps({"success": False, **error.as_dict()}, indent=2))
    print(f"callconnect: {error.error_id}: {printable(error.message, limit=None)}",
          file=sys.stderr)
    if error.error_id in COMPLIANCE_IDS:
        return EXIT_REFUSED
    if error.http_status in (400, 404, 413, 422):
        return EXIT_BAD_INPUT
    return EXIT_UNREACHABLE
