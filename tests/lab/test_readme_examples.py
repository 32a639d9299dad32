"""The README's shell examples run as a reader would paste them, against a
real daemon on the lab.

An example joins by its fence: a block opened with ```` ```sh tested ````
runs, blocks in README order, each in its own bash (``set -euo pipefail``).
Each command must exit 0, and each ``curl`` must get a 2xx, or the status a
comment right after the command names (``# 409 ...``, on its last line or
the next one). The examples' address (``http://127.0.0.1:8080``) is the test
daemon's, its token is the lab's (``lab``), ``callconnect`` runs this
checkout's command line with ``CALLCONNECT_URL`` and ``CALLCONNECT_TOKEN`` set
to that daemon, and the placeholders ``evt_…`` and ``3f1c…`` stand for a real
delivery's event id and its disabled URL's id, ``5f0c…`` for that call's id.
The blocks run in a folder of their own, so files they write stay there."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import StartReceiver
from tests.lab.conftest import DaemonProcess, api, wait_for_state

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
FENCE = "```sh tested"
README_URL = "http://127.0.0.1:8080"
README_TOKEN = "lab"
BLOCK_TIMEOUT = 120.0

# Runs before every block: curl checks its own answer's status against the
# one expected of the command (set by __expect before each command).
PRELUDE = r"""
set -euo pipefail
__expected='2??'
__expect() { __expected=$1; }
curl() {
  local body status
  body=$(mktemp)
  status=$(command curl --silent --show-error --max-time 30 --output "$body" \
           --write-out '%{http_code}' "$@") || { rm -f "$body"; return 1; }
  cat "$body"; echo; rm -f "$body"
  case $status in
    $__expected) ;;
    *) echo "HTTP $status where the README says $__expected: curl $*" >&2; return 1 ;;
  esac
}
callconnect() { "$README_EXAMPLES_PYTHON" -m controller "$@"; }
"""


@dataclass
class Command:
    text: str
    comment: str = ""

    @property
    def expected(self) -> str:
        """The status the comment names, else any 2xx (a case pattern)."""
        status = re.match(r"(\d{3})\b", self.comment)
        return status.group(1) if status else "2??"


@dataclass
class Block:
    line: int  # of the fence, 1-based
    text: str


def marked_blocks(readme: str) -> list[Block]:
    blocks: list[Block] = []
    lines = readme.splitlines()
    for number, line in enumerate(lines):
        if line.strip() == FENCE:
            end = next(i for i in range(number + 1, len(lines)) if lines[i].strip() == "```")
            blocks.append(Block(number + 1, "\n".join(lines[number + 1:end])))
    return blocks


def split_comment(line: str, quote: str | None) -> tuple[str, str, str | None]:
    """(code, comment, the quote still open at the end) of one line of shell."""
    escaped = False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote is not None:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip(), None
    return line, "", quote


def commands(block: str) -> list[Command]:
    """The block's commands (continued lines and multi-line quotes joined),
    each with the comment on its last line or the comment line after it."""
    found: list[Command] = []
    current: list[str] = []
    quote: str | None = None
    for line in block.splitlines():
        if not current and line.lstrip().startswith("#"):
            if found and not found[-1].comment:
                found[-1].comment = line.lstrip()[1:].strip()
            continue
        if not current and not line.strip():
            continue
        code, comment, quote = split_comment(line, quote)
        current.append(code)
        if quote is None and not code.endswith("\\"):
            found.append(Command("\n".join(current), comment))
            current = []
    assert not current, f"unterminated command: {current}"
    return found


def script(block: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        block = block.replace(placeholder, value)
    return PRELUDE + "".join(f"__expect '{c.expected}'\n{c.text}\n" for c in commands(block))


def test_commands_are_split_with_their_expected_status() -> None:
    found = commands("curl -X PUT http://h/a \\\n  -d '{\"a\": \"no # comment\n here\"}'\n"
                     "# 202 {\"x\": 1}\n#   more\ncurl http://h/b  # 409 taken\n"
                     "curl http://h/c  # the list\n\ncallconnect calls list -o json\n")
    assert [(c.text.split()[0], c.expected) for c in found] == [
        ("curl", "202"), ("curl", "409"), ("curl", "2??"), ("callconnect", "2??")]
    assert found[0].text.endswith("no # comment\n here\"}'")


async def disabled_delivery(client_daemon: DaemonProcess, receiver_url: str) -> dict[str, str]:
    """A call whose completion webhook a 410 disabled: the delivery and URL
    the webhook examples name."""
    async with api(client_daemon, README_TOKEN) as client:
        placed = await client.post("/v1/calls", json={
            "leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 1,
            "webhook_url": receiver_url})
        assert placed.status_code == 202, placed.text
        call_id = placed.json()["call_uuid"]
        await wait_for_state(client, call_id, "ended")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = (await client.get("/v1/webhooks/deliveries", params={
                "call_id": call_id, "state": "disabled"})).json()["deliveries"]
            if listed:
                return {"evt_…": listed[0]["event_id"], "3f1c…": listed[0]["url_id"],
                        "5f0c…": call_id}
            await asyncio.sleep(0.2)
    raise AssertionError(f"the 410 never disabled call {call_id}'s webhook URL")


async def hang_up_every_call(daemon: DaemonProcess) -> None:
    async with api(daemon, README_TOKEN) as client:
        active = (await client.get("/v1/calls", params={"status": "active"})).json()["calls"]
        for call in active:
            await client.post(f"/v1/calls/{call['call_uuid']}/hangup")
        for call in active:
            await wait_for_state(client, call["call_uuid"], "ended")


@pytest.mark.lab
async def test_every_tested_readme_example_runs(
        start_daemon: Callable[..., DaemonProcess], webhook_receiver: StartReceiver,
        tmp_path: Path) -> None:
    blocks = marked_blocks(README.read_text())
    assert len(blocks) >= 6, f"only {len(blocks)} blocks are marked {FENCE!r} in the README"
    daemon = start_daemon(CALLCONNECT_API_TOKENS=README_TOKEN)
    await daemon.ready()
    receiver = await webhook_receiver(answers=[410])
    values = {README_URL: daemon.url, **await disabled_delivery(daemon, receiver.url)}
    env = {**os.environ, "README_EXAMPLES_PYTHON": sys.executable, "PYTHONPATH": str(REPO),
           "CALLCONNECT_URL": daemon.url, "CALLCONNECT_TOKEN": README_TOKEN}
    failures = []
    try:
        for block in blocks:
            run = await asyncio.to_thread(
                subprocess.run, ["bash", "-c", script(block.text, values)], env=env, cwd=tmp_path,
                capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
            if run.returncode != 0:
                failures.append(f"README.md:{block.line}: exit {run.returncode}\n"
                                f"{run.stdout[-1500:]}{run.stderr[-1500:]}")
    finally:
        await hang_up_every_call(daemon)
    assert not failures, "\n\n".join(failures)
