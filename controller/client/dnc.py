"""``callconnect dnc list|check|add|remove``: the daemon's do-not-call list."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from controller.client.http import ApiError, Daemon, expect_dict, segment
from controller.client.output import (
    EXIT_OK,
    Format,
    print_fields,
    print_json,
    print_table,
    printable,
    when,
)

# `dnc check` on a number that is not listed: not an error, but not "listed" either.
EXIT_NOT_LISTED = 3


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    dnc = sub.add_parser("dnc", help="the daemon's do-not-call list: list, check, add, remove",
                         description="The do-not-call list, over the daemon's REST API (--url). "
                         "Numbers from compliance.dnc_file are read only.")
    actions = dnc.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[common],
                                 help="the file's and the API's numbers, in order, by page")
    listing.add_argument("--limit", type=int, help="numbers per page (the daemon's default: 100)")
    listing.add_argument("--cursor", help="the page after an earlier page's next_cursor")
    listing.add_argument("--all", action="store_true",
                         help="follow next_cursor to the last page and print every number")
    listing.set_defaults(client_handler=list_numbers)

    check = actions.add_parser(
        "check", parents=[common], help="whether a number is listed (exit 0 if it is, "
        f"{EXIT_NOT_LISTED} if not)")
    check.add_argument("number", metavar="NUMBER")
    check.set_defaults(client_handler=check_number)

    add = actions.add_parser("add", parents=[common], help="put a number on the list")
    add.add_argument("number", metavar="NUMBER", help="any form the daemon's default region reads")
    add.add_argument("--reason", help="why it may not be called")
    add.set_defaults(client_handler=add_number)

    remove = actions.add_parser("remove", parents=[common],
                                help="take a number added over the API off the list")
    remove.add_argument("number", metavar="NUMBER")
    remove.set_defaults(client_handler=remove_number)


def list_numbers(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    params = {"limit": args.limit, "cursor": args.cursor}
    entries, page = daemon.page_items("/v1/dnc", params, "entries", args.all)
    if fmt == "json":
        print_json({"entries": entries, "next_cursor": None} if args.all else page)
        return EXIT_OK
    print_table(["NUMBER", "SOURCE", "ADDED", "REASON"], [
        [e.get("number"), e.get("source"), when(e.get("added_at")), e.get("reason") or "-"]
        for e in map(expect_dict, entries)])
    if page.get("next_cursor"):
        print(f"more numbers: --cursor {printable(page['next_cursor'], limit=None)} (or --all)",
              file=sys.stderr)
    return EXIT_OK


def check_number(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    try:
        entry = expect_dict(daemon.json("GET", f"/v1/dnc/{segment(args.number)}"))
    except ApiError as error:
        if error.error_id != "dnc-not-found":
            raise
        if fmt == "json":
            print_json(error.as_dict())
        else:
            print(f"{printable(error.details.get('number', args.number))} is not on the "
                  "do-not-call list")
        return EXIT_NOT_LISTED
    show(entry, fmt)
    return EXIT_OK


def add_number(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    body = {"reason": args.reason} if args.reason is not None else None
    show(expect_dict(daemon.json("PUT", f"/v1/dnc/{segment(args.number)}", body=body)), fmt)
    return EXIT_OK


def remove_number(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    daemon.json("DELETE", f"/v1/dnc/{segment(args.number)}")
    if fmt == "table":
        print(f"removed {printable(args.number)} from the do-not-call list")
    return EXIT_OK


def show(entry: dict[str, Any], fmt: Format) -> None:
    if fmt == "json":
        print_json(entry)
        return
    print_fields([("number", entry.get("number")), ("source", entry.get("source")),
                  ("added", when(entry.get("added_at"))), ("reason", entry.get("reason") or "-")])

