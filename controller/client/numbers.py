"""``callconnect numbers list|show|put|delete``: the numbers the daemon takes
inbound calls on."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from controller.client.groups import read_body
from controller.client.http import Daemon, UsageError, expect_dict, segment
from controller.client.output import EXIT_OK, Format, print_fields, print_json, print_table, printable


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    numbers = sub.add_parser("numbers", help="the daemon's inbound numbers: list, show, put, "
                             "delete", description="Numbers that take inbound calls, over the "
                             "daemon's REST API (--url). Numbers from the config are read only.")
    actions = numbers.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[common],
                                 help="the config's and the API's numbers, in order, by page")
    listing.add_argument("--limit", type=int, help="numbers per page (the daemon's default: 100)")
    listing.add_argument("--cursor", help="the page after an earlier page's next_cursor")
    listing.add_argument("--all", action="store_true",
                         help="follow next_cursor to the last page and print every number")
    listing.set_defaults(client_handler=list_numbers)

    show = actions.add_parser("show", parents=[common], help="what a number does with its calls")
    show.add_argument("number", metavar="NUMBER")
    show.set_defaults(client_handler=show_number)

    put = actions.add_parser(
        "put", parents=[common], help="take calls on a number, or change what it does",
        description="Create or replace a number. The body is --body's JSON (the same as PUT "
        "/v1/numbers/NUMBER takes), with the flags given on top of it.")
    put.add_argument("number", metavar="NUMBER", help="any form the daemon's default region reads")
    put.add_argument("--body", metavar="FILE", help="the number's settings as JSON; - reads stdin")
    put.add_argument("--incoming-url", help="asked for each call's actions (call.incoming)")
    put.add_argument("--actions", type=json_list, metavar="JSON",
                     help="the actions of every call, as a JSON list (without --incoming-url)")
    put.add_argument("--fallback-actions", type=json_list, metavar="JSON",
                     help="the actions when --incoming-url fails, as a JSON list")
    put.add_argument("--incoming-timeout", type=float, help="seconds the URL has to answer")
    put.add_argument("--idle-timeout", type=int,
                     help="seconds a call with nothing left to do waits for actions")
    put.add_argument("--webhook-url", help="where its calls' webhooks go")
    put.set_defaults(client_handler=put_number)

    delete = actions.add_parser("delete", parents=[common],
                                help="stop taking calls on a number made over the API")
    delete.add_argument("number", metavar="NUMBER")
    delete.set_defaults(client_handler=delete_number)


def json_list(text: str) -> list[Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc})") from None
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError("actions are a JSON list: [{\"type\": ...}, ...]")
    return value


def list_numbers(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    params = {"limit": args.limit, "cursor": args.cursor}
    numbers, page = daemon.page_items("/v1/numbers", params, "numbers", args.all)
    if fmt == "json":
        print_json({"numbers": numbers, "next_cursor": None} if args.all else page)
        return EXIT_OK
    print_table(["NUMBER", "SOURCE", "DOES"], [
        [n.get("number"), n.get("source"), does(n)] for n in map(expect_dict, numbers)])
    if page.get("next_cursor"):
        print(f"more numbers: --cursor {printable(page['next_cursor'], limit=None)} (or --all)",
              file=sys.stderr)
    return EXIT_OK


def show_number(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    show(expect_dict(daemon.json("GET", f"/v1/numbers/{segment(args.number)}")), fmt)
    return EXIT_OK


def put_number(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    body = read_body(args.body, "number") if args.body else {}
    flags = {"incoming_url": args.incoming_url, "actions": args.actions,
             "fallback_actions": args.fallback_actions, "incoming_timeout": args.incoming_timeout,
             "idle_timeout": args.idle_timeout, "webhook_url": args.webhook_url}
    body.update({key: value for key, value in flags.items() if value is not None})
    if not body:
        raise UsageError("give the number's settings: --body, --incoming-url or --actions")
    # What a number may hold is the daemon's to say (400 invalid-field names the field).
    show(expect_dict(daemon.json("PUT", f"/v1/numbers/{segment(args.number)}", body=body)), fmt)
    return EXIT_OK


def delete_number(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    daemon.json("DELETE", f"/v1/numbers/{segment(args.number)}")
    if fmt == "table":
        print(f"deleted number {printable(args.number)}")
    return EXIT_OK


def does(number: dict[str, Any]) -> str:
    """What the number does with a call, in a few words."""
    if number.get("incoming_url"):
        return f"asks {number['incoming_url']}"
    kinds = [str(expect_dict(a).get("type")) for a in number.get("actions") or []]
    return ", ".join(kinds) or "-"


def show(number: dict[str, Any], fmt: Format) -> None:
    if fmt == "json":
        print_json(number)
        return
    print_fields([("number", number.get("number")), ("source", number.get("source")),
                  ("incoming url", number.get("incoming_url") or "-"),
                  ("incoming timeout", number.get("incoming_timeout")),
                  ("idle timeout", number.get("idle_timeout")),
                  ("webhook url", number.get("webhook_url") or "-")])
    for name in ("actions", "fallback_actions"):
        listed = number.get(name) or []
        if listed:
            print(f"\n{name.replace('_', ' ')}:")
            for i, action in enumerate(listed):
                print(f"  {i + 1}. {printable(json.dumps(action, ensure_ascii=False), limit=None)}")
