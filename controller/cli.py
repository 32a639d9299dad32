"""The ``callconnect`` command line.

    callconnect call --leg-a +27115550101 --leg-b +27115550202 \\
        --whisper "Connecting you to John Smith from the website form" --wait

With ``--wait`` it prints each step on stderr as it happens and the result as
JSON on stdout. Without it, it prints the call's id and initial state at once
and a detached process follows the call to its end (and its webhook).

That ``call`` runs a standalone controller: a running daemon does not see its
calls, and the daemon's do-not-call numbers, caps and limits do not apply.
``call --url URL`` (or with CALLCONNECT_URL set) places the call through the
daemon instead; ``calls``, ``groups`` and ``dnc`` are the daemon's client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import signal
import sys
import time
from typing import Any, get_args

import structlog
import uvloop

from controller import __version__, logs, shipped_files
from controller.app import Controller
from controller.calls.decision import Decision, Placed, Refused
from controller.calls.request import (
    MAX_RING_TIMEOUT,
    MIN_RING_TIMEOUT,
    CallRequest,
    RouteStrategy,
    Strategy,
    WhisperTiming,
    make_request,
)
from controller.calls.runner import ActiveCall
from controller.client import commands as client
from controller.client.remote_call import (
    COMPLIANCE_IDS,
    EXIT_BAD_INPUT,
    EXIT_CALL_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
)
from controller.config import Config, load_config
from controller.core.states import Transition
from controller.errors import CallConnectError, ConfigError, SwitchError, SwitchUnavailable
from controller.webhooks.sender import WebhookSender

log = structlog.get_logger(__name__)

DEFAULT_CONFIG = "/etc/callconnect/callconnect.toml"
# How long `call` without --wait waits for its follower to report the originate.
START_TIMEOUT = 90.0



def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "files":  # needs no config: it is how one gets the example
        return shipped_files.run(args)
    logs.setup(args.log_level, json=args.json_logs)
    client_status = client.run(args)  # the daemon's client, and `call --url`
    if client_status is not None:
        return client_status
    try:
        config = load_config(_config_path(args.config))
    except CallConnectError as exc:
        if args.command == "daemon":  # its log is where an admin looks
            log.error("daemon.config_invalid", error_id=exc.error_id, message=exc.message)
        return _fail(exc)
    if args.command == "call":
        try:
            request = make_request(
                leg_a=args.leg_a, leg_b=args.leg_b[0] if len(args.leg_b) == 1 else args.leg_b,
                whisper=args.whisper, record=args.record,
                ring_timeout=args.ring_timeout, time_limit=args.time_limit,
                caller_id=args.caller_id, webhook_url=args.webhook, strategy=args.strategy,
                whisper_timing=args.whisper_timing, confirm_key=args.confirm_key,
            )
        except CallConnectError as exc:
            return _fail(exc)
        if args.wait:
            return asyncio.run(_call_and_wait(config, request))
        return _call_detached(config, request, args.log_file)
    if args.command == "channels":
        return asyncio.run(_channels(config))
    if args.command == "daemon":
        return _daemon(config)
    return EXIT_BAD_INPUT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callconnect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", help=f"TOML config (default: $CALLCONNECT_CONFIG, "
                        f"else {DEFAULT_CONFIG} if it exists, else built-in defaults)")
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--json-logs", action="store_true", default=None,
                        help="JSON log lines even on a terminal")
    sub = parser.add_subparsers(dest="command", required=True)

    call = sub.add_parser("call", help="connect leg A to leg B: through the daemon with --url, "
                          "else with a standalone controller")
    call.add_argument("--leg-a", required=True, help="agent: +E.164, local number or sip: URI")
    call.add_argument("--leg-b", required=True, action="append",
                      help="customer: +E.164, local number, sip: URI, endpoint:NAME, "
                           "group:NAME or a dial-whom URL; repeat to ring several")
    call.add_argument("--strategy", choices=[str(s) for s in get_args(RouteStrategy)],
                      default=str(Strategy.SIMULTANEOUS),
                      help="with several --leg-b: at once or in turn")
    call.add_argument("--whisper-timing", choices=get_args(WhisperTiming),
                      default="before_dial", help="who hears the whisper: leg A before leg B "
                      "is dialed, or leg B when it answers")
    call.add_argument("--confirm-key", help="leg B must press this key to take the call")
    call.add_argument("--whisper", help="text spoken to leg A before leg B is dialed")
    call.add_argument("--no-record", dest="record", action="store_false", default=None,
                      help="do not record the call (recording is on by default)")
    call.add_argument("--ring-timeout", type=int, help="seconds each leg may ring "
                      f"({MIN_RING_TIMEOUT}-{MAX_RING_TIMEOUT})")
    call.add_argument("--time-limit", type=int, help="seconds the connected call may last")
    call.add_argument("--caller-id", help="caller ID number shown to both legs")
    call.add_argument("--webhook", help="URL that receives the result when the call ends")
    call.add_argument("--wait", action="store_true",
                      help="follow the call, print each step, end with the result")
    call.add_argument("--log-file", help="without --wait: where the follower logs")

    sub.add_parser("channels", help="list the channels the switch has now")
    sub.add_parser("daemon", help="run the daemon: REST API, store, webhooks (see README)")
    client.register(sub, call)
    shipped_files.add_parser(sub)
    return parser


def _config_path(given: str | None) -> str | None:
    if given:
        return given
    if os.environ.get("CALLCONNECT_CONFIG"):
        return os.environ["CALLCONNECT_CONFIG"]
    return DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None


class ConsoleListener:
    """The command line's view of a call: each step on stderr (if asked), and
    the completion webhook sent directly, a few attempts (the daemon instead
    keeps an outbox that retries for hours)."""

    def __init__(self, config: Config, progress: bool) -> None:
        self.config = config
        self.progress = progress
        self.started = time.monotonic()

    async def call_created(self, call: ActiveCall) -> None:
        self.started = time.monotonic()

    async def call_changed(self, call: ActiveCall, transitions: list[Transition]) -> None:
        if self.progress:
            for transition in transitions:
                print(f"[{time.monotonic() - self.started:6.2f}s] {transition.to_state:<11} "
                      f"{transition.reason}", file=sys.stderr, flush=True)

    async def call_reported(self, call: ActiveCall, event: str, data: dict[str, Any]) -> None:
        if self.progress:
            print(f"[{time.monotonic() - self.started:6.2f}s] {event}", file=sys.stderr, flush=True)

    async def call_ended(self, call: ActiveCall, result: dict[str, Any]) -> None:
        url = call.request.webhook_url or self.config.webhook.url
        if not url:
            return
        webhook = self.config.webhook
        try:
            sender = WebhookSender(self.config.outbound, webhook.signing_secret or None,
                                   timeout=webhook.timeout, attempts=webhook.attempts)
        except ConfigError as exc:  # an unusable signing secret: this webhook fails, the call's result stays
            result["webhook"] = {"event_id": None, "delivered": False, "status_code": None,
                                 "attempts": 0, "error": exc.message}
            return
        try:
            delivery = await sender.deliver(url, "call.completed", dict(result))
        finally:
            await sender.close()
        result["webhook"] = delivery.as_dict()


async def _place(config: Config, request: CallRequest, progress: bool) -> tuple[Controller, Any]:
    controller = Controller(config, ConsoleListener(config, progress))
    try:
        await controller.start()
    except SwitchError as unreachable:
        # The request is checked all the same: bad input is named even now
        # (place refuses it, or stops at the switch it cannot reach).
        try:
            decision = await controller.calls.place(request)
        finally:
            await controller.stop()
        if isinstance(decision, Refused) and not isinstance(decision.reason, SwitchUnavailable):
            raise decision.reason from None
        raise unreachable from None
    try:
        call = _placed(await controller.calls.place(request))
    except BaseException:
        await controller.stop()
        raise
    return controller, call


def _placed(decision: Decision) -> ActiveCall:
    """The call, or its refusal raised (the command line has no scheduler and
    no idempotency keys, so nothing is scheduled or replayed)."""
    if isinstance(decision, Refused):
        raise decision.reason
    assert isinstance(decision, Placed), decision
    return decision.call


async def _call_and_wait(config: Config, request: CallRequest) -> int:
    try:
        controller, call = await _place(config, request, progress=True)
    except CallConnectError as exc:
        return _fail(exc)
    loop = asyncio.get_running_loop()
    # Ctrl-C hangs the call up cleanly instead of leaving legs on the switch.
    loop.add_signal_handler(signal.SIGINT, lambda: asyncio.ensure_future(
        controller.calls.hangup(call.call_id, "interrupted")))
    try:
        result = await call.wait()
    finally:
        await controller.stop()
    print(json.dumps(result, indent=2))
    return EXIT_OK if result["success"] else EXIT_CALL_FAILED


def _call_detached(config: Config, request: CallRequest, log_file: str | None) -> int:
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        return _report_start(read_end)
    os.close(read_end)
    os.setsid()
    _redirect_output(log_file)
    with os.fdopen(write_end, "w") as report:
        code = asyncio.run(_follow_detached(config, request, report))
    os._exit(code)


def _report_start(read_end: int) -> int:
    """Parent side: print what the follower reports about the start, then go."""
    chunks = []
    deadline = time.monotonic() + START_TIMEOUT
    with os.fdopen(read_end) as pipe:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([pipe], [], [], deadline - time.monotonic())
            if not ready:
                break
            chunk = pipe.readline()
            if not chunk:
                break
            chunks.append(chunk)
    if not chunks:
        print(json.dumps({"success": False, "error_id": "no-start-report",
                          "message": f"the call's follower reported nothing within "
                                     f"{START_TIMEOUT:g} s; run with --wait to see why"}))
        return EXIT_UNREACHABLE
    response = json.loads(chunks[0])
    print(json.dumps(response, indent=2))
    if "error_id" in response:
        return _exit_code(response["error_id"])
    return EXIT_OK if response.get("success") else EXIT_CALL_FAILED


async def _follow_detached(config: Config, request: CallRequest, report: Any) -> int:
    try:
        controller, call = await _place(config, request, progress=False)
    except CallConnectError as exc:
        report.write(json.dumps({"success": False, **exc.as_dict()}) + "\n")
        return EXIT_BAD_INPUT
    report.write(json.dumps(call.initial_response()) + "\n")
    report.close()
    try:
        result = await call.wait()
    finally:
        await controller.stop()
    return EXIT_OK if result["success"] else EXIT_CALL_FAILED


def _redirect_output(log_file: str | None) -> None:
    target = os.open(log_file or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(target, 1)
    os.dup2(target, 2)
    os.close(target)
    logs.setup("info", json=True, stream=sys.stderr)


async def _channels(config: Config) -> int:
    controller = Controller(config, ConsoleListener(config, progress=False))
    try:
        await controller.start()
        for name in await controller.backend.active_channels():
            print(name)
    except CallConnectError as exc:
        return _fail(exc)
    finally:
        await controller.stop()
    return EXIT_OK


def _daemon(config: Config) -> int:
    from controller.daemon.service import run_daemon

    try:
        uvloop.run(run_daemon(config))
    except CallConnectError as exc:
        # One log line, JSON under systemd like every other, says why it stopped.
        structlog.get_logger(__name__).error("daemon.failed", **exc.as_dict())
        return _exit_code(exc.error_id)
    return EXIT_OK


def _fail(exc: CallConnectError) -> int:
    print(json.dumps({"success": False, **exc.as_dict()}, indent=2))
    label = "config error" if isinstance(exc, ConfigError) else "callconnect"
    print(f"{label}: {exc.message}", file=sys.stderr)
    return _exit_code(exc.error_id)


def _exit_code(error_id: str) -> int:
    if error_id in COMPLIANCE_IDS:
        return EXIT_REFUSED
    return EXIT_BAD_INPUT if error_id.startswith(("invalid", "same")) else EXIT_UNREACHABLE
