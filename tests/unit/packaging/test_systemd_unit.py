"""packaging/: the systemd unit is sandboxed (systemd-analyze security scores it
at most 2.0) yet can write every folder the daemon writes, and the sysusers.d
and tmpfiles.d files create the user and those folders."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from bench.common import DAEMON_LOG_ARGS
from controller.config import Config

ROOT = Path(__file__).resolve().parents[3]
UNIT = ROOT / "packaging" / "callconnect.service"
SYSUSERS = ROOT / "packaging" / "sysusers.d" / "callconnect.conf"
TMPFILES = ROOT / "packaging" / "tmpfiles.d" / "callconnect.conf"
MAX_EXPOSURE = 2.0
TIMEOUT = 60.0


def systemd_tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: apt-get install systemd (make install does)"
    return path


def directives(text: str) -> dict[str, list[str]]:
    """Every key=value of a unit file, in order (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def security(unit: Path) -> tuple[int, float]:
    """systemd-analyze's exit status with the project's threshold, and the score."""
    done = subprocess.run(
        [systemd_tool("systemd-analyze"), "security", "--offline=true",
         f"--threshold={round(MAX_EXPOSURE * 10)}", str(unit)],
        capture_output=True, text=True, timeout=TIMEOUT, check=False)
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert score, f"no score in systemd-analyze's output:\n{done.stdout}\n{done.stderr}"
    return done.returncode, float(score.group(1))


def test_the_unit_scores_at_most_2() -> None:
    status, score = security(UNIT)
    assert score <= MAX_EXPOSURE, f"systemd-analyze security scores the unit {score}"
    assert status == 0


def test_the_threshold_fails_an_unsandboxed_unit(tmp_path: Path) -> None:
    """The check above can fail: the unit without its sandbox is far over."""
    text = UNIT.read_text()
    weak = tmp_path / "callconnect.service"
    weak.write_text(text[:text.index("# Sandbox.")] + text[text.index("[Install]"):])
    status, score = security(weak)
    assert score > 5.0
    assert status != 0


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    """verify checks that ExecStart's program exists: point it at one that does
    here (the venv path is checked below); any warning fails the test."""
    unit = tmp_path / "callconnect.service"
    unit.write_text(UNIT.read_text().replace("/opt/callconnect/bin/callconnect",
                                             shutil.which("true") or "/bin/true"))
    done = subprocess.run([systemd_tool("systemd-analyze"), "verify", str(unit)],
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_the_daemon_is_notify_typed_watched_and_runs_from_the_venv() -> None:
    unit = directives(UNIT.read_text())
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"], "espeak-ng and sox may not send READY"
    assert unit["WatchdogSec"] == ["30"]
    assert unit["ExecStart"][0].startswith("/opt/callconnect/bin/callconnect ")
    assert unit["User"] == ["callconnect"]
    # make bench measures a daemon that logs as this one does.
    assert " ".join(DAEMON_LOG_ARGS) in unit["ExecStart"][0]
    # What the daemon needs through the sandbox: TCP and the notify socket,
    # setrlimit (LimitNOFILE), and fork+exec of espeak-ng and sox.
    assert set(unit["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "PrivateNetwork" not in unit and "IPAddressDeny" not in unit
    assert "~@resources" not in " ".join(unit["SystemCallFilter"])
    assert "NoExecPaths" not in unit


def default_folders() -> list[Path]:
    config = Config()
    return [Path(config.store.path).parent, Path(config.media.whisper_dir),
            Path(config.media.recording_dir)]


def test_every_folder_the_daemon_writes_is_writable_and_created() -> None:
    writable = [Path(path) for path in directives(UNIT.read_text())["ReadWritePaths"][0].split()]
    created = [Path(line.split()[1]) for line in TMPFILES.read_text().splitlines()
               if line.startswith("d ")]
    for folder in default_folders():
        assert any(folder.is_relative_to(path) for path in writable), f"{folder} is read-only"
        assert folder in created, f"tmpfiles.d does not create {folder}"
    assert set(writable) <= set(created), "a missing ReadWritePaths folder stops the unit"


def fake_root(root: Path) -> tuple[int, int]:
    """A root holding passwd and group with Asterisk's user, and the two files
    installed where the README puts them. Returns Asterisk's uid and gid. Not
    as root, every name maps to this process's ids, so the chowns succeed and
    the modes are still checked."""
    (root / "etc" / "sysusers.d").mkdir(parents=True)
    (root / "etc" / "tmpfiles.d").mkdir()
    shutil.copy(SYSUSERS, root / "etc" / "sysusers.d")
    shutil.copy(TMPFILES, root / "etc" / "tmpfiles.d")
    uid, gid = (120, 130) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    users = f"root:x:0:0:root:/root:/bin/sh\nasterisk:x:{uid}:{gid}::/var/lib/asterisk:/bin/false\n"
    groups = f"root:x:0:\nasterisk:x:{gid}:\n"
    if os.geteuid() != 0:
        users += f"callconnect:x:{uid}:{gid}::/var/lib/callconnect:/bin/false\n"
        groups += f"callconnect:x:{gid}:\n"
    (root / "etc" / "passwd").write_text(users)
    (root / "etc" / "group").write_text(groups)
    return uid, gid


def test_sysusers_and_tmpfiles_create_the_user_and_the_folders(tmp_path: Path) -> None:
    asterisk_uid, asterisk_gid = fake_root(tmp_path)
    for command in (["systemd-sysusers", f"--root={tmp_path}", "callconnect.conf"],
                    ["systemd-tmpfiles", f"--root={tmp_path}", "--create", "callconnect.conf"]):
        done = subprocess.run([systemd_tool(command[0]), *command[1:]], capture_output=True,
                              text=True, timeout=TIMEOUT, check=False)
        assert done.returncode == 0, f"{command[0]}: {done.stderr}"

    user = next(line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()
                if line.startswith("callconnect:"))
    uid, gid, home = int(user[2]), int(user[3]), user[5]
    assert home == "/var/lib/callconnect"
    expected = {  # path: (mode, owner, group)
        "/var/lib/callconnect": (0o751, uid, gid),
        "/var/lib/callconnect/whispers": (0o2750, uid, asterisk_gid),
        "/var/spool/callconnect": (0o751, uid, gid),
        "/var/spool/callconnect/recordings": (0o2770, asterisk_uid, gid),
    }
    for path, (mode, owner, group) in expected.items():
        found = (tmp_path / path.lstrip("/")).stat()
        assert (stat.S_IMODE(found.st_mode), found.st_uid, found.st_gid) == (mode, owner, group), path
    assert {Path(path) for path in expected} >= set(default_folders())


@pytest.mark.parametrize("name", ["sysusers.d", "tmpfiles.d"])
def test_the_readme_installs_the_files_where_systemd_reads_them(name: str) -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"packaging/{name}/callconnect.conf /etc/{name}/callconnect.conf" in readme
