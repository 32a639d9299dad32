"""How the client prints: the API's JSON as it came (``-o json``), or tables
for a person (``-o table``, the default on a terminal). Every cell is made
safe for a terminal first: the values come from the daemon's store, and a
control character in a reason or a metadata field must not drive the terminal."""

from __future__ import annotations

import json
import sys
import time
import unicodedata
from collections.abc import Sequence
from typing import Any, Literal

from controller.client.http import ApiError

Format = Literal["json", "table"]
EXIT_OK, EXIT_API, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports it
MAX_CELL = 60  # table cells longer than this are cut with an ellipsis


def default_format() -> Format:
    return "table" if sys.stdout.isatty() else "json"


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def printable(value: Any, limit: int | None = MAX_CELL) -> str:
    """One line of text: control and formatting characters (escapes, bidi
    overrides, line breaks) shown as ``\\uXXXX``; None as ``-``."""
    if value is None:
        return "-"
    text = str(value)
    clean = "".join(ch if unicodedata.category(ch)[0] != "C" else f"\\u{ord(ch):04x}"
                    for ch in text)
    if limit is not None and len(clean) > limit:
        clean = clean[:limit - 1] + "…"
    return clean


def when(unix_time: Any) -> str:
    """A Unix time in this machine's zone, to the second."""
    if not isinstance(unix_time, int | float) or isinstance(unix_time, bool):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix_time))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[printable(cell) for cell in row] for row in rows]
    widths = [max([len(header)] + [len(row[i]) for row in cells]) for i, header in enumerate(headers)]
    for row in [list(headers), *cells]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def print_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """Name-value lines, one per field."""
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"{name.ljust(width)}  {printable(value, limit=None)}")


def fail(error: ApiError, fmt: Format) -> int:
    """The error on stderr (error_id and message); with -o json its JSON on stdout too."""
    if fmt == "json":
        print_json(error.as_dict())
    print(f"callconnect: {error.error_id}: {printable(error.message, limit=None)}",
          file=sys.stderr)
    return EXIT_API


def usage(message: str) -> int:
    print(f"callconnect: {message}", file=sys.stderr)
    return EXIT_USAGE
