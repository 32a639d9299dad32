"""sip-lab/lab itself when things go wrong: ports held by something else, and a
phone that died before `lab down`. The test takes the running Asterisk half
down and brings it up again, as it was (the FreeSWITCH half has its own ports
and is left alone)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "sip-lab" / "lab"
LAB_DIR = Path(os.environ.get("CALLCONNECT_LAB_DIR", REPO / ".lab"))
BUSY_PHONE_PORT = 5074  # the busy phone (PHONES in sip-lab/lab)


def run_lab(*args: str, lab_dir: Path = LAB_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LAB, *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "CALLCONNECT_LAB_DIR": str(lab_dir)})


def processes_in(root: Path) -> list[int]:
    """Processes whose root is the lab's chroot (Asterisk and anything it ran)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "root") == str(root):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone(pid: int, timeout: float = 10) -> None:
    """Wait until a killed process is reaped: until then `kill` still finds it."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, f"process {pid} was not reaped within {timeout} s"
        time.sleep(0.05)


@pytest.mark.lab
def test_lab_up_refuses_ports_held_by_another_and_down_stops_everything(lab: None) -> None:
    root = LAB_DIR / "root"
    # A second clone's lab while this one is up: it refuses, and starts nothing.
    with tempfile.TemporaryDirectory() as other:
        second = run_lab("up", "asterisk", lab_dir=Path(other))
        assert second.returncode != 0
        assert "tcp 5038 (AMI, held by asterisk" in second.stderr, second.stderr
        assert "lab is up" not in second.stdout
        assert not (Path(other) / "root").exists() and not (Path(other) / "run").exists()
    assert run_lab("status", "asterisk").returncode == 0, "the running lab was disturbed"

    # A phone that is already gone does not stop `lab down` halfway.
    phone_pids = [int(f.read_text()) for f in (LAB_DIR / "run").glob("phone-*.pid")]
    asterisk_pid = int((LAB_DIR / "run" / "asterisk.pid").read_text())
    os.kill(phone_pids[0], signal.SIGKILL)
    gone(phone_pids[0])
    try:
        down = run_lab("down", "asterisk")
        assert down.returncode == 0, down.stdout + down.stderr
        assert not [pid for pid in phone_pids if alive(pid)], "a lab phone is still running"
        assert not alive(asterisk_pid), "Asterisk is still running"
        assert not processes_in(root), "processes left in the lab root"
        assert subprocess.run(["mountpoint", "-q", str(root / "proc")]).returncode != 0, \
            "/proc is still mounted in the lab root"

        # Something else holds one phone's port: up refuses before starting anything.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
            holder.bind(("127.0.0.1", BUSY_PHONE_PORT))
            refused = run_lab("up", "asterisk")
            assert refused.returncode != 0
            me = Path("/proc/self/comm").read_text().strip()
            assert f"udp {BUSY_PHONE_PORT} (phone busy, held by {me}, pid {os.getpid()})" \
                in refused.stderr, refused.stderr
            assert not processes_in(root), "Asterisk was started anyway"
            assert not list((LAB_DIR / "run").glob("phone-*.pid")), "phones were started anyway"
    finally:
        up = run_lab("up", "asterisk")
    assert up.returncode == 0, up.stdout + up.stderr
    assert run_lab("status", "asterisk").returncode == 0
