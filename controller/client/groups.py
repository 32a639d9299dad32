"""``callconnect groups list|show|put|delete``: the daemon's agent groups."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from controller.client.http import Daemon, UsageError, expect_dict, expect_list, mapping, segment
from controller.client.output import EXIT_OK, Format, print_fields, print_json, print_table, when

# A group's or number's body is small (the daemon takes at most 64 KiB by
# default); a --body file this large is a mistake.
MAX_BODY_FILE = 1024 * 1024


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    groups = sub.add_parser("groups", help="the daemon's agent groups: list, show, put, delete",
                            description="Agent groups, over the daemon's REST API (--url). "
                            "Groups from the config are read only.")
    actions = groups.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[common], help="every group, config's and API's")
    listing.set_defaults(client_handler=list_groups)

    show = actions.add_parser("show", parents=[common], help="a group with its agents' state")
    show.add_argument("name", metavar="NAME")
    show.set_defaults(client_handler=show_group)

    put = actions.add_parser(
        "put", parents=[common], help="create or replace a group made over the API",
        description="Create or replace a group. The body is --body's JSON (the same as PUT "
        "/v1/groups/NAME takes, fallbacks included), with the flags given on top of it.")
    put.add_argument("name", metavar="NAME")
    put.add_argument("--body", metavar="FILE", help="the group as JSON; - reads stdin")
    put.add_argument("--agent", dest="agents", action="append", metavar="TARGET",
                     help="an agent (number, sip: URI or endpoint:NAME); repeat, in priority "
                     "order")
    put.add_argument("--strategy", help="round-robin, simultaneous, sequential, longest-idle "
                     "or least-calls")
    put.add_argument("--ring-timeout", type=int, help="seconds each agent may ring")
    put.add_argument("--calls-period-hours", type=float,
                     help="the period least-calls counts calls over")
    put.set_defaults(client_handler=put_group)

    delete = actions.add_parser("delete", parents=[common], help="delete a group made over the API")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(client_handler=delete_group)


def list_groups(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    answer = expect_dict(daemon.json("GET", "/v1/groups"))
    if fmt == "json":
        print_json(answer)
        return EXIT_OK
    rows = []
    for group in map(expect_dict, expect_list(answer.get("groups"), "groups")):
        states = [mapping(s) for s in group.get("agent_states") or []]
        rows.append([group.get("name"), group.get("source"), group.get("strategy"),
                     len(group.get("agents") or []), sum(1 for s in states if s.get("on_call")),
                     group.get("ring_timeout")])
    print_table(["NAME", "SOURCE", "STRATEGY", "AGENTS", "ON A CALL", "RING TIMEOUT"], rows)
    return EXIT_OK


def show_group(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    group = expect_dict(daemon.json("GET", f"/v1/groups/{segment(args.name)}"))
    show(group, fmt)
    return EXIT_OK


def put_group(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    body = read_body(args.body) if args.body else {}
    flags = {"agents": args.agents, "strategy": args.strategy, "ring_timeout": args.ring_timeout,
             "calls_period_hours": args.calls_period_hours}
    body.update({key: value for key, value in flags.items() if value is not None})
    # What a group may hold is the daemon's to say (400 invalid-field names the field).
    group = expect_dict(daemon.json("PUT", f"/v1/groups/{segment(args.name)}", body=body))
    show(group, fmt)
    return EXIT_OK


def delete_group(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    daemon.json("DELETE", f"/v1/groups/{segment(args.name)}")
    if fmt == "table":
        print(f"deleted group {args.name}")
    return EXIT_OK


def show(group: dict[str, Any], fmt: Format) -> None:
    if fmt == "json":
        print_json(group)
        return
    print_fields([("group", group.get("name")), ("source", group.get("source")),
                  ("strategy", group.get("strategy")), ("ring timeout", group.get("ring_timeout")),
                  ("calls period (h)", group.get("calls_period_hours")),
                  ("fallbacks", ", ".join(sorted(mapping(group.get("fallbacks")))) or "-")])
    print()
    print_table(["AGENT", "ON CALL", "LAST CALL ENDED", "CALLS IN PERIOD"], [
        [s.get("target"), s.get("on_call"), when(s.get("last_ended_at")),
         s.get("calls_in_period")] for s in map(mapping, group.get("agent_states") or [])])


def read_body(source: str, what: str = "group") -> dict[str, Any]:
    try:
        if source == "-":
            text = sys.stdin.read(MAX_BODY_FILE + 1)
        else:
            with open(source, encoding="utf-8") as handle:
                text = handle.read(MAX_BODY_FILE + 1)
    except OSError as exc:
        raise UsageError(f"--body {source}: {exc.strerror}") from None
    if len(text) > MAX_BODY_FILE:
        raise UsageError(f"--body {source}: over {MAX_BODY_FILE} bytes; that is not a {what}")
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--body {source}: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise UsageError(f"--body {source}: a {what} is a JSON object")
    return body
