"""The client's subcommands, registered on ``callconnect``'s parser:

    callconnect calls list|show|hangup|recording
    callconnect groups list|show|put|delete
    callconnect numbers list|show|put|delete
    callconnect dnc list|check|add|remove
    callconnect call --url …       (through the daemon; see remote_call.py)

The daemon is ``--url`` (else ``$CALLCONNECT_URL``, else http://127.0.0.1:8080)
and its token ``--token`` (else ``$CALLCONNECT_TOKEN``). They read no config
file. Exit status: 0 done, 1 the daemon refused or could not be reached
(its error_id and message on stderr), 2 a usage error (nothing was sent);
``dnc check`` exits 3 for a number that is not listed."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from controller.client import calls, dnc, groups, numbers, remote_call
from controller.client.http import (
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    TOKEN_ENV,
    URL_ENV,
    ApiError,
    Daemon,
    UsageError,
    connection_settings,
    timeout_seconds,
)
from controller.client.output import EXIT_INTERRUPTED, Format, default_format, fail, usage

Handler = Callable[[argparse.Namespace, Daemon, Format], int]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             call: argparse.ArgumentParser) -> None:
    """Add calls, groups, numbers and dnc to ``sub``, and the daemon's options to ``call``."""
    common = argparse.ArgumentParser(add_help=False)
    daemon = common.add_argument_group("the daemon")
    daemon.add_argument("--url", help=f"its API (default: ${URL_ENV}, else {DEFAULT_URL})")
    daemon.add_argument("--token", help=f"API token (default: ${TOKEN_ENV}, which keeps it out "
                        "of the process list)")
    daemon.add_argument("--timeout", type=timeout_seconds, default=DEFAULT_TIMEOUT,
                        help=f"seconds each request may take (default {DEFAULT_TIMEOUT:g})")
    common.add_argument("-o", "--output", choices=("json", "table"),
                        help="table, or the API's JSON (default: table on a terminal, else json)")
    calls.register(sub, common)
    groups.register(sub, common)
    numbers.register(sub, common)
    dnc.register(sub, common)
    remote_call.add_options(call)


def run(args: argparse.Namespace) -> int | None:
    """The exit status of a client command, or None when the command is not
    the client's (``call`` without the daemon runs a standalone controller)."""
    handler: Handler | None = getattr(args, "client_handler", None)
    if handler is not None:
        return _run(handler, args)
    if args.command == "call":
        if conflict := remote_call.standalone_conflict(args):
            return usage(conflict)
        if remote_call.through_daemon(args):
            return remote_call.place(args)
    return None


def _run(handler: Handler, args: argparse.Namespace) -> int:
    fmt: Format = args.output or default_format()
    try:
        url, token = connection_settings(args.url, args.token)
        with Daemon(url, token, args.timeout) as daemon:
            return handler(args, daemon, fmt)
    except UsageError as exc:
        return usage(str(exc))
    except ApiError as error:
        return fail(error, fmt)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
