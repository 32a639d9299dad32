"""``callconnect calls list|show|hangup|recording``: the daemon's calls."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.client.http import (
    Daemon,
    UsageError,
    expect_dict,
    expect_list,
    mapping,
    segment,
)
from controller.client.output import (
    EXIT_OK,
    Format,
    print_fields,
    print_json,
    print_table,
    printable,
    when,
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    calls = sub.add_parser("calls", help="the daemon's calls: list, show, hangup, recording",
                           description="The daemon's calls, over its REST API (--url).")
    actions = calls.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[common], help="calls, newest first, by page")
    listing.add_argument("--status", help="active, scheduled, completed, no-answer, busy, "
                         "failed or canceled")
    listing.add_argument("--created-after", type=moment, metavar="TIME",
                         help="Unix time, or ISO 8601 (this machine's zone unless it names one)")
    listing.add_argument("--created-before", type=moment, metavar="TIME", help="likewise")
    listing.add_argument("--limit", type=int, help="calls per page (the daemon's default: 50)")
    listing.add_argument("--cursor", help="the page after an earlier page's next_cursor")
    listing.add_argument("--all", action="store_true",
                         help="follow next_cursor to the last page and print every call")
    listing.set_defaults(client_handler=list_calls)

    show = actions.add_parser("show", parents=[common], help="a call's state, result and timeline")
    show.add_argument("call_id", metavar="CALL_ID")
    show.set_defaults(client_handler=show_call)

    hangup = actions.add_parser("hangup", parents=[common],
                                help="cancel a call before the bridge, or end a live one")
    hangup.add_argument("call_id", metavar="CALL_ID")
    hangup.set_defaults(client_handler=hang_up)

    recording = actions.add_parser("recording", parents=[common],
                                   help="download a call's recording (WAV)")
    recording.add_argument("call_id", metavar="CALL_ID")
    recording.add_argument("-f", "--file", help="where to write it (default: CALL_ID.wav in "
                           "this folder; - for stdout)")
    recording.add_argument("--force", action="store_true", help="overwrite the file")
    recording.set_defaults(client_handler=download_recording)


def moment(text: str) -> float:
    """A time flag: a Unix time, or ISO 8601 read in this machine's zone unless it names one."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a Unix time nor ISO 8601 (2025-03-01T08:00)") from None


def list_calls(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    params = {"status": args.status, "created_after": args.created_after,
              "created_before": args.created_before, "limit": args.limit, "cursor": args.cursor}
    calls, page = daemon.page_items("/v1/calls", params, "calls", args.all)
    if fmt == "json":
        print_json({"calls": calls, "next_cursor": None} if args.all else page)
        return EXIT_OK
    print_table(["CALL", "CREATED", "STATE", "STATUS", "LEG A", "LEG B"], [
        [call.get("call_uuid"), when(call.get("created_at")), call.get("state"),
         call.get("status"), request_of(call).get("leg_a"),
         targets(request_of(call).get("leg_b"))] for call in map(expect_dict, calls)])
    if page.get("next_cursor"):
        print(f"more calls: --cursor {printable(page['next_cursor'], limit=None)} (or --all)",
              file=sys.stderr)
    return EXIT_OK


def show_call(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    call = expect_dict(daemon.json("GET", f"/v1/calls/{segment(args.call_id)}"))
    if fmt == "json":
        print_json(call)
        return EXIT_OK
    print_call(call)
    timeline = expect_list(call.get("timeline", []), "timeline")
    if timeline:
        print("timeline:")
        for item in map(expect_dict, timeline):
            data = mapping(item.get("data"))
            what = (f"{printable(data.get('to'))}  {printable(data.get('reason'), limit=None)}"
                    if item.get("kind") == "transition" else
                    printable(", ".join(f"{k}={v}" for k, v in data.items()), limit=None))
            print(f"  {when(item.get('at'))}  {printable(item.get('kind'))}  {what}")
    return EXIT_OK


def hang_up(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    call = expect_dict(daemon.json("POST", f"/v1/calls/{segment(args.call_id)}/hangup"))
    if fmt == "json":
        print_json(call)
    else:
        print_call(call)
    return EXIT_OK


def download_recording(args: argparse.Namespace, daemon: Daemon, fmt: Format) -> int:
    path = f"/v1/calls/{segment(args.call_id)}/recording"
    if args.file == "-":
        if sys.stdout.isatty():
            raise UsageError("--file -: not writing a WAV to a terminal; redirect stdout")
        written = daemon.download(path, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        print(f"wrote {written} bytes of call {printable(args.call_id)}'s recording to stdout",
              file=sys.stderr)
        return EXIT_OK
    target = Path(args.file or f"{segment(args.call_id)}.wav")
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists; pass --force to overwrite it")
    # Written beside the target and renamed into place: a failed download
    # leaves no half file under the name asked for.
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                       suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            written = daemon.download(path, out)
        os.replace(partial, target)
    except BaseException:
        os.unlink(partial)
        raise
    print(f"wrote {written} bytes to {target}", file=sys.stderr)
    return EXIT_OK


def print_call(call: dict[str, Any]) -> None:
    request, result = request_of(call), mapping(call.get("result"))
    fields: list[tuple[str, Any]] = [
        ("call", call.get("call_uuid")), ("state", call.get("state")),
        ("status", call.get("status")), ("reason", result.get("reason")),
        ("created", when(call.get("created_at"))), ("updated", when(call.get("updated_at")))]
    if call.get("scheduled_for") is not None:
        fields.append(("scheduled for", when(call.get("scheduled_for"))))
    for leg in ("leg_a", "leg_b"):
        outcome = mapping(result.get(leg))
        fields.append((leg.replace("_", " "), f"{targets(request.get(leg))}  "
                       f"{outcome.get('status') or ''}".rstrip()))
    if result:
        fields.append(("talk seconds", result.get("talk_seconds")))
        fields.append(("hangup by", result.get("hangup_by")))
        recording = result.get("recording")
        fields.append(("recording", recording.get("path") if isinstance(recording, dict)
                       else "none"))
    print_fields(fields)


def request_of(call: dict[str, Any]) -> dict[str, Any]:
    return mapping(call.get("request"))


def targets(leg: Any) -> str:
    """A leg as asked: one target, or several (``to`` of each) joined by commas."""
    if isinstance(leg, list):
        return ",".join(str(t.get("to") if isinstance(t, dict) else t) for t in leg)
    return "-" if leg is None else str(leg)
