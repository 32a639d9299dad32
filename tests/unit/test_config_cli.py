"""A bad config through the real command line: ``callconnect --config X ...``
prints one ``config error:`` line naming the setting, its value and where it
came from, and exits 2, without a traceback; the daemon logs the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXIT_BAD_INPUT = 2
RUN_TIMEOUT = 60.0


def callconnect(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLCONNECT_")}
    environ = {**clean, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "controller", *args], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)


def assert_config_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert f"config error: {message}\n" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(("toml", "env", "message"), [
    # out of range
    ("[asterisk]\nport = 70000", {}, "asterisk.port = 70000 in {}: must be at most 65535"),
    # a timeout that is not positive
    ("[asterisk]\naction_timeout = -2", {}, "asterisk.action_timeout = -2 in {}: must be more than 0"),
    # a count below its floor
    ("[webhook]\nconcurrency = 0", {}, "webhook.concurrency = 0 in {}: must be at least 1"),
    # a negative rate
    ("[api]\nmax_calls_per_second = -1.0", {},
     "api.max_calls_per_second = -1.0 in {}: must be at least 0"),
    # a region phonenumbers does not know
    ('[calls]\ndefault_region = "XX"', {}, 'calls.default_region = "XX" in {}: not a region '
     'phonenumbers knows: use a two-letter ISO 3166 code such as "ZA", "GB" or "US"'),
    # not one of the choices
    ('backend = "yate"', {}, "backend = \"yate\" in {}: must be one of 'asterisk' or 'freeswitch'"),
    # the wrong type
    ("[calls]\nrecord = 1", {}, "calls.record = 1 in {}: must be true or false"),
    # an unknown key
    ('[api]\nprot = 8080', {}, "api.prot in {}: unknown setting (did you mean api.port?)"),
    # a bad value from the environment
    ("", {"CALLCONNECT_API_PORT": "0"}, "api.port = 0 from CALLCONNECT_API_PORT: must be at least 1"),
    ("", {"CALLCONNECT_API_PORT": "http"},
     'api.port = "http" from CALLCONNECT_API_PORT: must be a whole number'),
    # a secret file that is not there
    ("", {"CALLCONNECT_API_TOKENS_FILE": "/nonexistent/tokens"},
     "api.tokens from CALLCONNECT_API_TOKENS_FILE: the file /nonexistent/tokens does not exist"),
])
def test_each_kind_of_bad_value_exits_2_with_one_line(
        tmp_path: Path, toml: str, env: dict[str, str], message: str) -> None:
    path = tmp_path / "callconnect.toml"
    path.write_text(toml + "\n")
    assert_config_error(callconnect("--config", str(path), "channels", env=env),
                        message.format(path))


def test_a_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert_config_error(callconnect("--config", str(missing), "channels"),
                        f"config file {missing} does not exist")


def test_the_daemon_logs_the_error_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "callconnect.toml"
    path.write_text("[asterisk]\nport = 70000\n")
    result = callconnect("--config", str(path), "--json-logs", "daemon")
    message = f"asterisk.port = 70000 in {path}: must be at most 65535"
    assert_config_error(result, message)
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [(e["event"], e["level"], e["message"]) for e in logged] == [
        ("daemon.config_invalid", "error", message)]


def test_an_unknown_variable_is_warned_about_and_the_run_goes_on(tmp_path: Path) -> None:
    """The warning names the nearest setting; the run then fails only on what
    it would fail on anyway (here the bad port), not on the variable."""
    path = tmp_path / "callconnect.toml"
    path.write_text("[asterisk]\nport = 70000\n")
    result = callconnect("--config", str(path), "--json-logs", "channels",
                         env={"CALLCONNECT_ASTERISK_SECERT": "hunter2"})
    warnings = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [(w["variable"], w["did_you_mean"]) for w in warnings] == [
        ("CALLCONNECT_ASTERISK_SECERT", "CALLCONNECT_ASTERISK_SECRET")]
    assert "hunter2" not in result.stderr + result.stdout
