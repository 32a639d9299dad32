"""The parts the store bench runs as processes: the Event Socket peer
(tests/esl/peer/, a fake FreeSWITCH speaking the real wire protocol) and
the daemon itself (``python -m controller daemon``) on a given store file,
driving that peer. Neither needs the lab nor root."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.common import DAEMON_LOG_ARGS, REPO, free_port

TOKEN = "bench-store"
PEER_PASSWORD = "bench-store-secret"
WHISPER = "Connecting you to a caller from the benchmark"
LEG_A = "+27115550101"  # the peer's 01xx phone: answers after 0.1 s

# Phones answer and refuse at once; a call ends by its time_limit.
PEER = f"""
import asyncio, sys
from tests.esl.peer import EslPeer

async def main() -> None:
    peer = EslPeer(password={PEER_PASSWORD!r}, answer_delay=0.1, reject_delay=0.1,
                   hangup_after=1.0)
    await peer.start()
    print(peer.port, flush=True)
    # Runs until the bench closes its stdin (or ends).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await peer.stop()

asyncio.run(main())
"""


class Peer:
    """The Event Socket peer in a process of its own, so its work does not
    delay the bench's clock."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", PEER], cwd=REPO, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"the Event Socket peer (tests/esl/peer/) did not start: {line!r}")
        self.port = int(line)

    def stop(self) -> None:
        if self.process is None:
            return
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


class StoreDaemon:
    """``python -m controller daemon`` on ``store``, driving the peer, as
    tests/lab/conftest.py's DaemonProcess starts it."""

    def __init__(self, store: Path, workdir: Path, peer_port: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "bench-store.toml"
        self.config.write_text(f"""
backend = "freeswitch"
[freeswitch]
host = "127.0.0.1"
port = {peer_port}
password = "{PEER_PASSWORD}"
gateway = "lab"
[calls]
default_region = "ZA"
[media]
whisper_dir = "{workdir / 'media'}"
recording_dir = "{workdir / 'recordings'}"
[api]
port = {self.port}
tokens = ["{TOKEN}"]
max_calls_per_second = 20  # the bench paces its calls well under it
[store]
path = "{store}"
[outbound]
allow_private = true  # the bench's webhook receiver is on loopback
[webhook]
unsigned = true  # the bench's own receiver does not verify
""")
        self.log_path = workdir / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.client = httpx.AsyncClient(base_url=self.url, timeout=30,
                                        headers={"Authorization": f"Bearer {TOKEN}"})

    async def start(self, timeout: float = 120) -> float:
        """Start it; seconds from the process's start until /status answers 200."""
        with self.log_path.open("ab") as log:
            started = time.perf_counter()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "controller", "--config", str(self.config),
                 *DAEMON_LOG_ARGS, "daemon"],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = started + timeout
        last = ""
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited ({self.process.returncode}); see {self.log_path}")
            try:
                answer = await self.client.get("/status", timeout=2)
                if answer.status_code == 200:
                    return time.perf_counter() - started
                last = answer.text[:300]
            except httpx.HTTPError as exc:
                last = repr(exc)
            await asyncio.sleep(0.02)
        raise RuntimeError(f"/status did not answer 200 within {timeout:g} s (last: {last}); "
                           f"see {self.log_path}")

    async def stop(self) -> None:
        """SIGTERM, as a supervisor stops it: it drains and commits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, 60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait, 10)

    async def close(self) -> None:
        await self.stop()
        await self.client.aclose()

    async def wait_ended(self, call_ids: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for call_id in call_ids:
            while True:
                call = (await self.client.get(f"/v1/calls/{call_id}")).json()
                if call.get("state") == "ended":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"call {call_id} had not ended after {timeout:g} s: {call}")
                await asyncio.sleep(0.1)
