"""The `callconnect` client commands (calls, groups, numbers, dnc, `call --url`), run
as a user runs them: the installed `callconnect` entry point as a process,
against the real daemon process on loopback with its switch down (so nothing
is ever dialed and no lab is needed). Calls to list, show and hang up are
scheduled ones, which the daemon keeps without dialing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.api.switch_down import serving, switch_down_env
from tests.lab.conftest import REPO, DaemonProcess, free_port

TOKEN = "client-test-token-5b1e9c"
CALLCONNECT = Path(sys.executable).parent / "callconnect"
FILE_NUMBER = "+27115550909"  # on the daemon's do-not-call file


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    if not CALLCONNECT.is_file():
        pytest.fail(f"{CALLCONNECT} is missing: install the package (`make install`, or "
                    "`pip install -e .` into this venv)")
    tmp = tmp_path_factory.mktemp("client")
    dnc_file = tmp / "dnc.txt"
    dnc_file.write_text(f"{FILE_NUMBER}, asked in writing\n")
    process = DaemonProcess(tmp / "store.sqlite3", tmp / "daemon.log", switch_down_env(
        tmp, CALLCONNECT_API_TOKENS=TOKEN, CALLCONNECT_COMPLIANCE_DNC_FILE=str(dnc_file)))
    process.start()
    serving(process)
    yield process
    process.stop()


def callconnect(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The entry point as a process; whatever it printed never holds the token."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLCONNECT_")}
    done = subprocess.run([str(CALLCONNECT), *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, input=stdin,
                          env={**clean, "PYTHONPATH": str(REPO), **(env or {})})
    assert TOKEN not in done.stdout + done.stderr
    return done


def as_user(daemon: DaemonProcess, token: str = TOKEN) -> dict[str, str]:
    return {"CALLCONNECT_URL": daemon.url, "CALLCONNECT_TOKEN": token}


def run_json(daemon: DaemonProcess, *args: str) -> Any:
    done = callconnect(*args, "-o", "json", env=as_user(daemon))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def failed(done: subprocess.CompletedProcess[str], error_id: str, status: int = 1) -> None:
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert f"callconnect: {error_id}: " in done.stderr, done.stderr


def scheduled_call(daemon: DaemonProcess, leg_b: str) -> str:
    """A call outside its window (it opens in two hours), which the daemon keeps."""
    hour = datetime.now(ZoneInfo("Africa/Johannesburg")).hour
    response = httpx.post(f"{daemon.url}/v1/calls", timeout=10, headers={
        "Authorization": f"Bearer {TOKEN}"}, json={
        "leg_a": "+27115550101", "leg_b": leg_b, "record": False,
        "calling_hours": f"{(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00",
        "outside_calling_hours": "schedule"})
    assert response.status_code == 202, response.text
    return str(response.json()["call_uuid"])


def test_calls_list_pages_and_follows_the_cursor(daemon: DaemonProcess) -> None:
    made = [scheduled_call(daemon, f"+2711555020{n}") for n in range(3)]
    first = run_json(daemon, "calls", "list", "--status", "scheduled", "--limit", "2")
    assert len(first["calls"]) == 2 and first["next_cursor"]
    rest = run_json(daemon, "calls", "list", "--status", "scheduled", "--limit", "2",
                    "--cursor", first["next_cursor"])
    every = run_json(daemon, "calls", "list", "--status", "scheduled", "--limit", "2", "--all")
    assert every["next_cursor"] is None
    listed = [c["call_uuid"] for c in every["calls"]]
    assert listed == [c["call_uuid"] for c in first["calls"] + rest["calls"]]
    assert set(made) <= set(listed)

    table = callconnect("calls", "list", "--status", "scheduled", "--limit", "2", "-o", "table",
                        env=as_user(daemon))
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["CALL", "CREATED", "STATE", "STATUS", "LEG", "A", "LEG", "B"]
    assert [row.split()[0] for row in rows] == [c["call_uuid"] for c in first["calls"]]
    assert all("scheduled" in row for row in rows)
    assert f"--cursor {first['next_cursor']}" in table.stderr


def test_calls_show_prints_the_apis_json_or_a_table(daemon: DaemonProcess) -> None:
    call_id = scheduled_call(daemon, "+27115550211")
    shown = run_json(daemon, "calls", "show", call_id)
    api = httpx.get(f"{daemon.url}/v1/calls/{call_id}", timeout=10,
                    headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert shown == api
    table = callconnect("calls", "show", call_id, "-o", "table", env=as_user(daemon))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["call", call_id]
    assert lines[1].split() == ["state", "scheduled"]
    assert "+27115550211" in table.stdout and "timeline:" in table.stdout


def test_calls_hangup_cancels_and_a_second_is_refused(daemon: DaemonProcess) -> None:
    call_id = scheduled_call(daemon, "+27115550212")
    ended = run_json(daemon, "calls", "hangup", call_id)
    assert (ended["state"], ended["status"]) == ("ended", "canceled")
    again = callconnect("calls", "hangup", call_id, "-o", "json", env=as_user(daemon))
    failed(again, "call-ended")
    assert json.loads(again.stdout)["error_id"] == "call-ended"


def test_a_missing_call_or_recording_is_the_apis_error(daemon: DaemonProcess,
                                                        tmp_path: Path) -> None:
    failed(callconnect("calls", "show", "no-such-call", env=as_user(daemon)), "call-not-found")
    # A path in the id stays in its segment: it reaches no other route (GET /v1/groups).
    escape = callconnect("calls", "show", "../groups", "-o", "json", env=as_user(daemon))
    assert escape.returncode == 1, escape.stdout
    assert json.loads(escape.stdout)["error_id"] in ("not-found", "call-not-found")
    call_id = scheduled_call(daemon, "+27115550213")
    done = callconnect("calls", "recording", call_id, env=as_user(daemon), cwd=tmp_path)
    failed(done, "recording-not-found")
    assert list(tmp_path.iterdir()) == []  # no half-written file left


def test_groups_put_show_list_and_delete(daemon: DaemonProcess, tmp_path: Path) -> None:
    body = tmp_path / "group.json"
    body.write_text(json.dumps({"agents": ["+27115550101"], "fallbacks": {
        "all_busy": {"message": "All our agents are busy."}}}))
    put = run_json(daemon, "groups", "put", "sales", "--body", str(body), "--agent",
                   "+27115550202", "--agent", "endpoint:desk-12", "--strategy", "longest-idle")
    # The flags win over the file's fields; the file's others are kept.
    assert put["agents"] == ["+27115550202", "endpoint:desk-12"]
    assert put["strategy"] == "longest-idle" and put["source"] == "api"
    assert put["fallbacks"]["all_busy"]["message"] == "All our agents are busy."
    assert run_json(daemon, "groups", "show", "sales") == put

    listed = callconnect("groups", "list", "-o", "table", env=as_user(daemon))
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows["sales"][:4] == ["sales", "api", "longest-idle", "2"]
    assert rows["lab-desk"][:3] == ["lab-desk", "config", "sequential"]

    deleted = callconnect("groups", "delete", "sales", "-o", "table", env=as_user(daemon))
    assert deleted.returncode == 0 and deleted.stdout == "deleted group sales\n"
    failed(callconnect("groups", "show", "sales", env=as_user(daemon)), "group-not-found")
    failed(callconnect("groups", "delete", "lab-desk", env=as_user(daemon)), "group-from-config")


def test_groups_put_takes_its_body_from_stdin_and_the_daemon_judges_it(
        daemon: DaemonProcess) -> None:
    done = callconnect("groups", "put", "support", "--body", "-", "-o", "json",
                       env=as_user(daemon), stdin='{"agents": ["+27115550303"]}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["agents"] == ["+27115550303"]
    bad = callconnect("groups", "put", "support", "--agent", "+27115550303", "--strategy",
                      "whoever", "-o", "json", env=as_user(daemon))
    failed(bad, "invalid-field")
    assert json.loads(bad.stdout)["details"]["field"] == "strategy"
    not_json = callconnect("groups", "put", "support", "--body", "-", env=as_user(daemon),
                           stdin="{agents")
    assert not_json.returncode == 2 and "not JSON" in not_json.stderr


def test_dnc_add_check_list_and_remove(daemon: DaemonProcess) -> None:
    added = run_json(daemon, "dnc", "add", "011 555 0303", "--reason", "asked by phone")
    assert added == {"number": "+27115550303", "reason": "asked by phone", "source": "api",
                     "added_at": added["added_at"]}
    checked = callconnect("dnc", "check", "+27115550303", "-o", "table", env=as_user(daemon))
    assert checked.returncode == 0 and "asked by phone" in checked.stdout

    every = run_json(daemon, "dnc", "list", "--limit", "1", "--all")
    assert [e["number"] for e in every["entries"]] == sorted([FILE_NUMBER, "+27115550303"])
    page = run_json(daemon, "dnc", "list", "--limit", "1")
    assert len(page["entries"]) == 1 and page["next_cursor"]

    removed = callconnect("dnc", "remove", "+27115550303", "-o", "table", env=as_user(daemon))
    assert removed.returncode == 0, removed.stderr
    gone = callconnect("dnc", "check", "+27115550303", "-o", "table", env=as_user(daemon))
    assert gone.returncode == 3 and "not on the do-not-call list" in gone.stdout
    failed(callconnect("dnc", "remove", FILE_NUMBER, env=as_user(daemon)), "dnc-from-file")
    bidi = callconnect("dnc", "add", "+27115550304", "--reason", "evil\u202etext", "-o", "json",
                       env=as_user(daemon))
    failed(bidi, "invalid-field")


def test_flags_win_over_the_environment(daemon: DaemonProcess) -> None:
    env = {"CALLCONNECT_URL": f"http://127.0.0.1:{free_port()}", "CALLCONNECT_TOKEN": "wrong"}
    done = callconnect("groups", "list", "-o", "json", "--url", daemon.url, "--token", TOKEN,
                       env=env)
    assert done.returncode == 0, done.stderr
    assert "lab-desk" in [g["name"] for g in json.loads(done.stdout)["groups"]]


def test_a_wrong_or_missing_token_is_refused_and_never_printed(daemon: DaemonProcess) -> None:
    wrong = callconnect("calls", "list", "-o", "json", env=as_user(daemon, "not-" + TOKEN))
    failed(wrong, "unauthorized")
    assert "not-" + TOKEN not in wrong.stdout + wrong.stderr
    assert json.loads(wrong.stdout)["error_id"] == "unauthorized"
    missing = callconnect("calls", "list", env={"CALLCONNECT_URL": daemon.url})
    failed(missing, "unauthorized")
    assert "CALLCONNECT_TOKEN" in missing.stderr


def test_network_failures_are_api_errors_and_usage_errors_exit_2(daemon: DaemonProcess) -> None:
    nobody = callconnect("calls", "list", env={"CALLCONNECT_URL": f"http://127.0.0.1:{free_port()}",
                                               "CALLCONNECT_TOKEN": TOKEN})
    failed(nobody, "daemon-unreachable")
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        quiet = callconnect("calls", "list", "--timeout", "0.5",
                            env={"CALLCONNECT_URL": url, "CALLCONNECT_TOKEN": TOKEN})
    failed(quiet, "daemon-timeout")

    for args in (["calls", "list", "-o", "yaml"], ["calls", "frobnicate"],
                 ["calls", "list", "--created-after", "yesterday"],
                 ["calls", "list", "--timeout", "0"]):
        done = callconnect(*args, env=as_user(daemon))
        assert done.returncode == 2, (args, done.stderr)
    for url in ("ftp://127.0.0.1/", "127.0.0.1:8080", f"http://user:{TOKEN}@127.0.0.1:1/"):
        done = callconnect("calls", "list", env={"CALLCONNECT_URL": url})
        assert done.returncode == 2 and "--url / CALLCONNECT_URL" in done.stderr, done.stderr


def test_call_through_the_daemon_gets_its_refusals(daemon: DaemonProcess) -> None:
    """`call --url` goes through POST /v1/calls: the daemon's do-not-call file
    and its checks apply, with the standalone call's exit codes."""
    call = ("call", "--leg-a", "+27115550101", "--no-record")
    listed = callconnect(*call, "--leg-b", FILE_NUMBER, env=as_user(daemon))
    assert listed.returncode == 4, listed.stderr
    assert json.loads(listed.stdout)["error_id"] == "do-not-call"
    bad = callconnect(*call, "--leg-b", "12", "--wait", env=as_user(daemon))
    assert bad.returncode == 2, bad.stderr
    assert json.loads(bad.stdout)["error_id"] == "invalid-number"
    down = callconnect(*call, "--leg-b", "+27115550202", "--url", daemon.url, "--token", TOKEN)
    assert down.returncode == 3, down.stderr
    error = json.loads(down.stdout)
    assert error["success"] is False and error["error_id"] == "switch-unavailable"

    assert callconnect(*call, "--leg-b", "+27115550202", "--standalone", "--url",
                       daemon.url).returncode == 2
    assert callconnect(*call, "--leg-b", "+27115550202", "--idempotency-key", "k1").returncode == 2


def test_numbers_put_show_list_and_delete(daemon: DaemonProcess) -> None:
    put = run_json(daemon, "numbers", "put", "011 555 0900", "--actions",
                   '[{"type": "connect", "to": "group:lab-desk", "whisper": "Incoming sales call"}]',
                   "--idle-timeout", "45")
    assert (put["number"], put["source"], put["idle_timeout"]) == ("+27115550900", "api", 45)
    assert put["actions"] == [{"type": "connect", "to": "group:lab-desk",
                               "whisper": "Incoming sales call"}]
    assert run_json(daemon, "numbers", "show", "+27115550900") == put

    listed = callconnect("numbers", "list", "-o", "table", env=as_user(daemon))
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows["+27115550900"] == ["+27115550900", "api", "connect"]
    shown = callconnect("numbers", "show", "+27115550900", "-o", "table", env=as_user(daemon))
    assert "idle timeout      45" in shown.stdout and "group:lab-desk" in shown.stdout

    # The daemon judges the settings; the client only carries them.
    failed(callconnect("numbers", "put", "+27115550900", "--incoming-url",
                       "ftp://crm.example.com/in", env=as_user(daemon)), "invalid-field")
    deleted = callconnect("numbers", "delete", "+27115550900", "-o", "table",
                          env=as_user(daemon))
    assert deleted.returncode == 0 and deleted.stdout == "deleted number +27115550900\n"
    failed(callconnect("numbers", "show", "+27115550900", env=as_user(daemon)),
           "number-not-found")
    nothing = callconnect("numbers", "put", "+27115550900", env=as_user(daemon))
    assert nothing.returncode == 2 and "--actions" in nothing.stderr
