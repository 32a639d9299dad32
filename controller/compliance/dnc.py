"""The do-not-call list: numbers from a file (``compliance.dnc_file``) and
numbers added over the API (kept in the store).

The file has one number per line, in any format ``calls.default_region``
reads, optionally followed by a comma and a reason; ``#`` starts a comment:

    +27115550202, asked on 2025-03-02   # complaint 4411
    011 555 0203

It is read again whenever its modification time or size changes. A line that is
not a number is logged with its line number and skipped. If the file goes
missing while running, the last list read stays in force (a deleted file must
not quietly allow calls); it must exist at start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from controller.errors import ConfigError, InvalidField, InvalidNumber
from controller.numbers import normalize_number
from controller.tts import control_character

log = structlog.get_logger(__name__)

FILE, API = "file", "api"
MAX_REASON = 500


def check_reason(reason: str, field: str = "reason") -> str:
    """A reason as kept and echoed in refusals: InvalidField naming ``field``
    if it is longer than MAX_REASON or holds a control, bidi or other
    formatting character (it could hide or reorder the text around it)."""
    if len(reason) > MAX_REASON:
        raise InvalidField(f"{field} has {len(reason)} characters; the limit is {MAX_REASON}",
                           field=field)
    char = control_character(reason)
    if char is not None:
        raise InvalidField(f"{field} contains the control or formatting character "
                           f"U+{ord(char):04X}: line breaks, tabs, bidi overrides and zero-width "
                           "characters are refused", field=field)
    return reason


def printable(reason: str) -> str:
    """The reason without control, bidi or formatting characters (a file's,
    or one stored before they were refused)."""
    return "".join(c for c in reason if control_character(c) is None)


@dataclass(frozen=True)
class DncEntry:
    number: str  # E.164
    reason: str
    source: str  # FILE or API
    added_at: float | None = None  # when it was added over the API

    def as_dict(self) -> dict[str, object]:
        return {"number": self.number, "reason": self.reason, "source": self.source,
                "added_at": self.added_at}


def parse_dnc_file(text: str, region: str, path: str) -> dict[str, DncEntry]:
    entries: dict[str, DncEntry] = {}
    for line_number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        number_text, _, reason = line.partition(",")
        try:
            number = normalize_number(number_text.strip(), region, "number")
        except InvalidNumber as exc:
            log.warning("dnc.bad_line", path=path, line=line_number, error=exc.message)
            continue
        kept = printable(reason.strip())[:MAX_REASON]
        if kept != reason.strip()[:MAX_REASON]:
            log.warning("dnc.reason_cleaned", path=path, line=line_number,
                        error="control or formatting characters left out of the reason")
        entries.setdefault(number, DncEntry(number, kept, FILE))
    return entries


class DncFile:
    """The file's numbers, read again when the file changes."""

    def __init__(self, path: Path, region: str) -> None:
        self.path = path
        self.region = region
        self._seen: tuple[int, int] | None = None
        self._entries: dict[str, DncEntry] = {}
        try:
            self._reload(os.stat(path))
        except OSError as exc:
            raise ConfigError(f"compliance.dnc_file {path} cannot be read: {exc.strerror}",
                              setting="compliance.dnc_file", path=str(path)) from exc

    def entries(self) -> dict[str, DncEntry]:
        try:
            stat = os.stat(self.path)
            if (stat.st_mtime_ns, stat.st_size) != self._seen:
                self._reload(stat)
        except OSError as exc:
            log.error("dnc.file_unreadable", path=str(self.path), error=exc.strerror,
                      keeping=len(self._entries))
        return self._entries

    def _reload(self, stat: os.stat_result) -> None:
        text = self.path.read_text(encoding="utf-8", errors="replace")
        self._entries = parse_dnc_file(text, self.region, str(self.path))
        self._seen = (stat.st_mtime_ns, stat.st_size)
        log.info("dnc.file_read", path=str(self.path), numbers=len(self._entries))
