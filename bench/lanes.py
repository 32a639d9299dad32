"""The bench's parts on the lab: the calls and steps it records, a capture
of leg B's INVITEs, an AMI observer (whisper ends, the control lane's
outcomes), the daemon as a process, and the CPU of a process from /proc."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import dpkt
import httpx
from panoramisk import Manager
from panoramisk.message import Message

from . import common, cpu_parts
from .common import REPO, BenchRefused, connect_watching, free_port

LAB = REPO / "sip-lab" / "lab"
LAB_DIR = Path(os.environ.get("CALLCONNECT_LAB_DIR", REPO / ".lab"))
MEDIA = LAB_DIR / "root/var/lib/callconnect/media"
RECORDINGS = LAB_DIR / "root/var/lib/callconnect/recordings"
# The inbound lanes' greeting, as the controller and as the switch see it.
ACTIONS = LAB_DIR / "root/var/lib/callconnect/bench"
ACTIONS_ON_SWITCH = "/var/lib/callconnect/bench"
ASTERISK_PID = LAB_DIR / "run" / "asterisk.pid"
LEG_A = "+27115550101"
B_PREFIX = "+2711556"  # each call gets its own leg B number: +27 11 556 NNNN
B_PORT = 5072  # lab-answer-b
TOKEN = "bench"
# OriginateResponse's Reason: the last control frame leg A's channel got.
ORIGINATE_REASONS = {"0": "no channel", "1": "hung up", "3": "rang, not answered in time",
                     "5": "busy", "8": "congestion"}
READY_SECONDS = 30  # for a daemon to answer GET /status once started
LAST_WORDS = 1000  # characters of its log's last line a failed daemon's error shows
# Reasons a step lists for its calls that did not complete, the most frequent
# first; the rest are counted together.
LISTED_REASONS = 5
# Numbers and ids in a reason, masked so that the calls it befell count as one.
_VARYING = re.compile(r"\+?[0-9][0-9a-f-]{3,}")


@dataclass
class ApiAnswer:
    """The daemon's answer to a POST /v1/calls."""

    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def refused(lane: str, answer: ApiAnswer) -> BenchRefused:
    return BenchRefused(f"{lane} lane: POST /v1/calls answered {answer.status}: "
                        f"{answer.text[:500]}")


@dataclass
class Call:
    lane: str
    key: str  # call_uuid (controller) or ChannelId (control)
    b_number: str
    placed_at: float
    answered_b: bool = False
    ended: bool = False
    status: str = "pending"
    ended_at: float | None = None
    webhook_at: float | None = None
    whisper_ready: bool | None = None
    why: str | None = None  # why it did not complete, when known

    def failure(self) -> str:
        """Why the call did not complete, as a step counts it."""
        if self.why is not None:
            return _VARYING.sub("N", self.why)
        if self.lane == "control":
            return "no Hangup by the end of the step's drain"
        return "no completion webhook by the end of the step's drain"

    @property
    def webhook_ms(self) -> float | None:
        """Call end (the switch's time) to its completion webhook received."""
        if self.webhook_at is None or self.ended_at is None:
            return None
        return (self.webhook_at - self.ended_at) * 1000


@dataclass
class Step:
    run: int
    lane: str
    rate: float
    offered: int
    completed: int
    success: float
    gap_p99_ms: float | None = None
    cpu_percent: float | None = None  # the controller's, while the step's calls were offered
    # The daemon's event loop over the same time: % of it spent waiting,
    # runnable, for a CPU (the scheduler gave the cores to others).
    loop_wait_percent: float | None = None
    cpu_ms_per_call: float | None = None  # the controller's, from the step's start to its drain
    switch_cpu_ms_per_call: float | None = None  # Asterisk's, over the same time
    event_lag_p99_ms: float | None = None
    observer_lag_p99_ms: float | None = None  # a bare AMI client's lag: Asterisk's own delay
    webhook_ms: dict[str, float | None] | None = None  # p50, p90, p99 (controller lane)
    # How the calls that did not complete ended -> calls (failures_of), as
    # the inbound lanes' steps count theirs.
    failures: dict[str, int] = field(default_factory=dict)


def failures_of(calls: list[Call]) -> dict[str, int]:
    """The calls that did not complete, counted by why, the most frequent
    first (LISTED_REASONS of them, then the others together)."""
    counts = Counter(call.failure() for call in calls if call.status != "completed").most_common()
    listed = dict(counts[:LISTED_REASONS])
    others = sum(count for _, count in counts[LISTED_REASONS:])
    return listed | ({"other reasons": others} if others else {})


def say(text: str) -> None:
    print(f"[bench] {text}", flush=True)


def cpu_seconds(pid: int) -> float:
    """The process's user and system CPU so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scheduled_seconds(pid: int) -> tuple[float, float]:
    """Seconds the process's main thread (the daemon's event loop) has run
    on a CPU, and waited runnable for one (/proc/PID/task/PID/schedstat)."""
    ran, waited, _ = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
    return int(ran) / 1e9, int(waited) / 1e9


async def idle_cpu_rate(pid: int, windows: int = 4, seconds: float = 2.0) -> float:
    """CPU seconds per second the process spends with no call: what a step
    subtracts before it divides by its calls (timers, pings, the bench's own
    /status samples). The lowest of ``windows`` windows: work left from the
    process's start is not idle (the daemon's first retention run reads the
    recordings folder: 12-40 % of a core for its first second with the lab's
    57,000 recordings, which in one 3 s window zeroed the CPU per call of the
    steps up to 6 calls/s)."""
    rates = []
    for _ in range(windows):
        before, started = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(seconds)
        rates.append((cpu_seconds(pid) - before) / (time.monotonic() - started))
    return min(rates)


def per_call(seconds: float, idle_rate: float, since: float, calls: int) -> float | None:
    """CPU ms per call: what a step cost a process (``seconds`` of CPU since
    the monotonic time ``since``) over its idle rate (see idle_cpu_rate),
    shared among the step's ``calls``."""
    busy = seconds - idle_rate * (time.monotonic() - since)
    return round(1000 * max(busy, 0.0) / calls, 3) if calls else None


def asterisk_pid() -> int:
    return int(ASTERISK_PID.read_text().strip())


def machine() -> dict[str, str]:
    asterisk = subprocess.run([LAB, "cli", "core show version"], capture_output=True,
                              text=True).stdout.strip()
    sipp = subprocess.run(["sipp", "-v"], capture_output=True, text=True).stdout
    return {**common.machine(), "asterisk": asterisk.split(" built")[0],
            "sipp": next((w for w in sipp.split() if w.startswith("v3")), "?")}


class Capture:
    """INVITEs to leg B on the wire (tcpdump on loopback, SIP only)."""

    def __init__(self) -> None:
        self.file = Path(tempfile.mkstemp(suffix=".pcap")[1])
        self.process = subprocess.Popen(
            ["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-n", "-s", "600", "-w",
             str(self.file), f"udp dst port {B_PORT}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.process.stderr is not None
        self.process.stderr.readline()  # "listening on lo ..."

    def invites(self) -> dict[str, list[float]]:
        """When each leg B number got an INVITE, every time (a long bench
        reuses its 10,000 numbers; a retransmission adds a later time)."""
        time.sleep(0.5)
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=10)
        seen: dict[str, list[float]] = {}
        with self.file.open("rb") as handle:
            for at, frame in dpkt.pcap.Reader(handle):
                payload = bytes(dpkt.ethernet.Ethernet(frame).data.data.data)
                if payload.startswith(b"INVITE sip:"):
                    number = payload[11:payload.index(b"@")].decode()
                    seen.setdefault(number, []).append(at)
        self.file.unlink()
        return seen


class AmiObserver:
    """What the switch says about the bench's calls: whisper ends (both lanes)
    and the control lane's outcomes."""

    def __init__(self) -> None:
        self.whisper_done: dict[str, float] = {}  # leg A Uniqueid -> switch time
        self.lags_ms: list[float] = []  # this observer's own event lag: Asterisk's side
        self.calls: dict[str, Call] = {}  # control lane: leg A ChannelId -> call
        self.manager = Manager(host="127.0.0.1", port=5038, username="lab-observer",
                               secret="lab-observer", events="call,user", ping_delay=10)
        self.manager.register_event("*", self.on_event)

    async def connect(self) -> None:
        await connect_watching(self.manager, [
            "Event: (UserEvent|DialEnd|Hangup|OriginateResponse)[[:space:]]"])

    def on_event(self, manager: Manager, event: Message) -> None:
        name, uniqueid = event.get("Event"), event.get("Uniqueid", "")
        if "Timestamp" in event:
            self.lags_ms.append((time.time() - float(event["Timestamp"])) * 1000)
        if name == "UserEvent" and event.get("Step") == "whisper-done":
            self.whisper_done[uniqueid] = float(event.get("Timestamp", time.time()))
        call = self.calls.get(uniqueid)
        if call is None:
            return
        if name == "DialEnd" and event.get("DestUniqueid") and event.get("DestUniqueid") != uniqueid:
            if event.get("DialStatus") == "ANSWER":
                call.answered_b = True
            else:
                call.why = f"leg B's Dial ended {event.get('DialStatus')}"
        elif name == "OriginateResponse" and event.get("Response") == "Failure":
            call.ended, call.status = True, "failed"
            reason = event.get("Reason", "")
            call.why = f"leg A's Originate failed: {ORIGINATE_REASONS.get(reason, '?')} (Reason {reason})"
        elif name == "Hangup":
            call.ended = True
            call.ended_at = float(event.get("Timestamp", time.time()))
            call.status = "completed" if call.answered_b else "failed"
            if not call.answered_b and call.why is None:
                call.why = f"leg A hung up before B was dialed ({event.get('Cause-txt')})"

    async def originate(self, call: Call, whisper: str, talk: int) -> None:
        response = await asyncio.wait_for(self.manager.send_action({
            "Action": "Originate", "Channel": f"PJSIP/{LEG_A}@lab-answer-a",
            "Context": "bench-control", "Exten": "s", "Priority": "1", "Timeout": "30000",
            "ChannelId": call.key, "Async": "true",
            "Variable": [f"CC_AUDIO={whisper}", f"CC_DIAL=PJSIP/{call.b_number}@lab-answer-b",
                         f"CC_TALK={talk}",
                         f"CC_RECORDING=/var/lib/callconnect/recordings/{call.key}.wav"]},
            as_list=False), 10)
        if not response.success:
            raise BenchRefused(f"control lane: AMI Originate refused: {response.get('Message')}")


class Daemon:
    def __init__(self, workdir: Path, talk: int, max_rate: float = 0.0, *,
                 counted: Path | None = None) -> None:
        """``counted``: run the daemon with its CPU counted by part
        (bench.cpu_parts), which writes its counts there."""
        self.port = free_port()
        self.counted = counted
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "bench.toml"
        config.write_text(f"""
[asterisk]
secret = "callconnect-lab"
trunk_endpoint = "lab-answer-b"
uri_endpoint = "lab-uri"
routes = [{{ prefix = "+271155501", endpoint = "lab-answer-a" }},
          {{ prefix = "{B_PREFIX}", endpoint = "lab-answer-b" }}]
[calls]
time_limit = {talk}
[media]
whisper_dir = "{MEDIA}"
whisper_switch_dir = "/var/lib/callconnect/media"
recording_dir = "{RECORDINGS}"
recording_switch_dir = "/var/lib/callconnect/recordings"
actions_dir = "{ACTIONS}"
actions_switch_dir = "{ACTIONS_ON_SWITCH}"
[api]
port = {self.port}
tokens = ["{TOKEN}"]
max_calls_per_second = {max_rate}
[store]
path = "{workdir / f"bench-{self.port}.sqlite3"}"
[outbound]
allow_private = true  # the bench's webhook receiver is on loopback
[webhook]
retry_base_seconds = 0.5
unsigned = true  # the bench's own receiver on loopback does not verify
""")
        self.log = (workdir / "daemon.log").open("ab")
        # A session of its own, as systemd gives the daemon a cgroup of its own:
        # in the bench's session it shared the bench client's scheduling group
        # (autogroup), and the two split one group's CPU when the switch and
        # the phones took the rest.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.cpu_parts" if counted else "controller",
             "--config", str(config), *common.DAEMON_LOG_ARGS, "daemon"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
            env={**os.environ, cpu_parts.ENV: str(counted)} if counted else None)
        # Enough connections that the bench's own client never limits the offered
        # rate; each let go well before the daemon closes it after 5 s idle
        # (uvicorn's keep-alive). At httpx's own 5 s, a POST sent on a
        # connection the daemon was closing just then failed (ReadError):
        # 1 to 4 calls in 1,500 at 30-35 calls/s.
        self.client = httpx.AsyncClient(base_url=self.url, timeout=10,
                                        limits=httpx.Limits(max_connections=2000,
                                                            keepalive_expiry=2.0),
                                        headers={"Authorization": f"Bearer {TOKEN}"})
        # The calls go through aiohttp: its client costs the bench about a
        # fifth of httpx's CPU a request (1.8 against 9.1 s for 1,125 POSTs at
        # 75 a second), and the bench's own event loop lag counts in every
        # answer time it measures. With httpx that loop ran up to 3.7 s late
        # (p99 0.46-1.25 s) in the overload lane; with aiohttp, p99 0.10-0.16 s.
        self.placing = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=2000, keepalive_timeout=2.0),
            timeout=aiohttp.ClientTimeout(total=10),
            headers={"Authorization": f"Bearer {TOKEN}"})

    async def place(self, body: dict[str, Any]) -> ApiAnswer | None:
        """POST /v1/calls; None if it was not answered within 10 s."""
        try:
            async with self.placing.post(f"{self.url}/v1/calls", json=body) as answer:
                return ApiAnswer(answer.status, await answer.text())
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def ready(self) -> None:
        """Once the daemon answers GET /status. If it exits first or does not
        answer in time, it is stopped (a daemon left behind would hold the
        lab's AMI and its port), and BenchRefused says why."""
        deadline = time.monotonic() + READY_SECONDS
        problem = f"was not ready within {READY_SECONDS} s"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                problem = f"exited ({code}) before it was ready"
                break
            try:
                if (await self.client.get("/status")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        words = self.last_words()
        await self.stop()
        raise BenchRefused(f"the bench's daemon {problem}: {words}")

    def last_words(self) -> str:
        """The end of the daemon's log, where it says why it stopped. Only its
        tail is read: the log is shared by a run's daemons and grows with every
        call they place."""
        self.log.flush()
        with open(self.log.name, "rb") as log:
            # Enough bytes for LAST_WORDS characters of UTF-8.
            log.seek(max(0, log.seek(0, os.SEEK_END) - 4 * LAST_WORDS))
            lines = log.read().decode(errors="replace").strip().splitlines()
        return (lines[-1][-LAST_WORDS:] if lines else "it logged nothing") + f" (log: {self.log.name})"

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def loop_waited_seconds(self) -> float:
        return scheduled_seconds(self.process.pid)[1]

    async def cpu_counts(self) -> dict[str, Any]:
        """The counted daemon's CPU by part so far (bench.cpu_parts)."""
        assert self.counted is not None, "the daemon was not started counted"
        return await cpu_parts.read_snapshot(self.process.pid, self.counted)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    async def lag_buckets(self) -> dict[float, float]:
        text = (await self.client.get("/metrics")).text
        buckets = {}
        for line in text.splitlines():
            if line.startswith("callconnect_switch_event_lag_seconds_bucket"):
                le = line.split('le="')[1].split('"')[0]
                buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
        return buckets

    async def stop(self) -> None:
        await self.client.aclose()
        await self.placing.close()
        self.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.process.wait, 120)
        self.log.close()


def lag_p99_ms(before: dict[float, float], after: dict[float, float]) -> float | None:
    counts = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = counts[-1][1] if counts else 0
    if not total:
        return None
    for le, cumulative in counts:
        if cumulative >= 0.99 * total:
            return le * 1000
    return None
