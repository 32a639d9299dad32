"""make bench: the controller next to Asterisk's own limit, on the real lab.

Two lanes run the same call connect (whisper to leg A, then record and dial leg
B, bridge, a fixed talk time) at a rising rate until success falls under 99.9 %:

* control: a bare AMI Originate loop into the [bench-control] dialplan; no
  controller in the path. Its sustained rate is the switch's limit here.
* controller: the daemon's API placing the calls.

Every controller figure is reported next to its goal, and as a ratio to the
control lane where the issue asks for one, since absolute figures drift on a
shared 2-core machine. Writes docs/bench/latest.json and docs/bench/latest.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dpkt
import httpx
from aiohttp import web
from panoramisk import Manager
from panoramisk.message import Message

from controller.tts import WhisperRenderer

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "sip-lab" / "lab"
LAB_ROOT = REPO / ".lab" / "root"
MEDIA = LAB_ROOT / "var/lib/callconnect/media"
RECORDINGS = LAB_ROOT / "var/lib/callconnect/recordings"
OUT = REPO / "docs" / "bench"
WHISPER = "Connecting you to a caller from the benchmark"
LEG_A = "+27115550101"
B_PREFIX = "+2711556"  # each call gets its own leg B number: +27 11 556 NNNN
B_PORT = 5072  # lab-answer-b
TOKEN = "bench"
SUCCESS_GOAL = 0.999


@dataclass
class BenchRefused(RuntimeError):
    """A call the bench meant to place was refused (not a 429 it measures):
    the bench's own setup is wrong, and every figure after it would be too."""


def refused(lane: str, response: httpx.Response) -> BenchRefused:
    return BenchRefused(f"{lane} lane: POST /v1/calls answered {response.status_code}: "
                        f"{response.text[:500]}")


@dataclass
class Call:
    lane: str
    key: str  # call_uuid (controller) or ChannelId (control)
    b_number: str
    placed_at: float
    answered_b: bool = False
    ended: bool = False
    status: str = "pending"
    whisper_done_at: float | None = None
    invite_at: float | None = None
    ended_at: float | None = None
    webhook_at: float | None = None
    whisper_ready: bool | None = None


@dataclass
class Step:
    lane: str
    rate: float
    offered: int
    completed: int
    success: float
    gap_p99_ms: float | None
    cpu_percent: float | None = None
    event_lag_p99_ms: float | None = None
    observer_lag_p99_ms: float | None = None  # a bare AMI client's lag: Asterisk's own delay


@dataclass
class Report:
    machine: dict[str, str]
    settings: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    gaps_ms: dict[str, list[float]] = field(default_factory=dict)


def say(text: str) -> None:
    print(f"[bench] {text}", flush=True)


def percentile(values: Iterable[float], q: float) -> float | None:
    data = sorted(values)
    if not data:
        return None
    index = min(len(data) - 1, max(0, round(q * (len(data) - 1))))
    return data[index]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    asterisk = subprocess.run([LAB, "cli", "core show version"], capture_output=True,
                              text=True).stdout.strip()
    sipp = subprocess.run(["sipp", "-v"], capture_output=True, text=True).stdout
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory_gib": str(round(
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)),
        "kernel": platform.release(), "python": platform.python_version(),
        "asterisk": asterisk.split(" built")[0],
        "sipp": next((w for w in sipp.split() if w.startswith("v3")), "?"),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


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

    def invites(self) -> dict[str, float]:
        time.sleep(0.5)
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=10)
        first: dict[str, float] = {}
        with self.file.open("rb") as handle:
            for at, frame in dpkt.pcap.Reader(handle):
                payload = bytes(dpkt.ethernet.Ethernet(frame).data.data.data)
                if payload.startswith(b"INVITE sip:"):
                    number = payload[11:payload.index(b"@")].decode()
                    first.setdefault(number, at)
        self.file.unlink()
        return first


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
        await self.manager.connect()
        login = self.manager.authenticated_future
        if login is not None:
            await asyncio.wait_for(login, 10)
        # Only what it reads, so the measuring process stays light under load.
        await asyncio.wait_for(self.manager.send_action({
            "Action": "Filter", "Operation": "Add",
            "Filter": "Event: (UserEvent|DialEnd|Hangup|OriginateResponse)[[:space:]]"}), 10)

    def on_event(self, manager: Manager, event: Message) -> None:
        name, uniqueid = event.get("Event"), event.get("Uniqueid", "")
        if "Timestamp" in event:
            self.lags_ms.append((time.time() - float(event["Timestamp"])) * 1000)
        if name == "UserEvent" and event.get("Step") == "whisper-done":
            self.whisper_done[uniqueid] = float(event.get("Timestamp", time.time()))
        call = self.calls.get(uniqueid)
        if call is None:
            return
        if name == "DialEnd" and event.get("DialStatus") == "ANSWER" and event.get("DestUniqueid") \
                and event.get("DestUniqueid") != uniqueid:
            call.answered_b = True
        elif name == "OriginateResponse" and event.get("Response") == "Failure":
            call.ended, call.status = True, "failed"
        elif name == "Hangup":
            call.ended = True
            call.ended_at = float(event.get("Timestamp", time.time()))
            call.status = "completed" if call.answered_b else "failed"

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
    def __init__(self, workdir: Path, talk: int, max_rate: float = 0.0) -> None:
        self.port = free_port()
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
        self.process = subprocess.Popen(
            [sys.executable, "-m", "controller", "--config", str(config), "--log-level", "warning",
             "daemon"], stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)
        # Enough connections that the bench's own client never limits the offered rate.
        self.client = httpx.AsyncClient(base_url=self.url, timeout=10,
                                        limits=httpx.Limits(max_connections=2000),
                                        headers={"Authorization": f"Bearer {TOKEN}"})

    async def ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if (await self.client.get("/status")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError("the daemon did not become ready; see the bench's daemon.log")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

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


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ami = AmiObserver()
        self.report = Report(machine(), {"step_seconds": args.step_seconds, "talk_seconds": args.talk,
                                          "rates": args.rates, "whisper": WHISPER})
        self.calls: list[Call] = []
        self.webhooks: dict[str, tuple[float, dict[str, Any]]] = {}
        self.serial = 0
        self.lag_mark = 0
        self.step_calls: dict[tuple[str, float], list[Call]] = {}

    def b_number(self) -> str:
        self.serial += 1
        return f"{B_PREFIX}{self.serial % 10000:04d}"

    async def webhook(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("type") == "call.completed":
            self.webhooks[body["data"]["call_uuid"]] = (time.time(), body["data"])
        return web.Response(status=204)

    async def drain(self, calls: list[Call], lane: str) -> None:
        deadline = time.monotonic() + 3 * self.args.talk + 40
        while time.monotonic() < deadline:
            if lane == "control" and all(c.ended for c in calls):
                return
            if lane == "controller" and all(c.key in self.webhooks for c in calls):
                return
            await asyncio.sleep(0.2)

    async def offer(self, rate: float, place: Any) -> list[Call]:
        count = max(1, round(rate * self.args.step_seconds))
        start = time.monotonic()
        pending: list[asyncio.Task[Call | None]] = []
        try:
            for i in range(count):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                for placed in pending:  # a refusal stops the step now, not at its end
                    if placed.done() and placed.exception() is not None:
                        raise placed.exception()  # type: ignore[misc]
                pending.append(asyncio.create_task(place()))
            results = await asyncio.gather(*pending)
        finally:
            for placed in pending:
                placed.cancel()
        return [call for call in results if call is not None]

    async def control_lane(self, whisper: str) -> float:
        sustained = 0.0
        for rate in self.args.rates:
            async def place() -> Call:
                call = Call("control", f"bench-ctl-{self.serial + 1}-a", self.b_number(), time.time())
                self.ami.calls[call.key] = call
                await self.ami.originate(call, whisper, self.args.talk)
                return call
            calls = await self.offer(rate, place)
            await self.drain(calls, "control")
            if not self.record_step("control", rate, calls):
                break
            sustained = rate
        return sustained

    async def controller_lane(self, workdir: Path,
                              hook_url: str) -> tuple[float, list[tuple[int, int]]]:
        daemon = Daemon(workdir, self.args.talk)
        await daemon.ready()
        sustained, samples = 0.0, []
        sampling = asyncio.create_task(self.sample(daemon, samples))
        try:
            for rate in self.args.rates:
                async def place() -> Call | None:
                    b = self.b_number()
                    placed = time.time()
                    try:
                        response = await daemon.client.post("/v1/calls", json={
                            "leg_a": LEG_A, "leg_b": b, "whisper": WHISPER,
                            "webhook_url": hook_url})
                    except httpx.TransportError:
                        # Unanswered within the timeout: the step is past what the
                        # controller sustains, which the ramp is there to find.
                        return Call("controller", f"unanswered-{b}", b, placed, ended=True,
                                    status="unanswered")
                    if response.status_code != 202:
                        raise refused("controller", response)
                    return Call("controller", response.json()["call_uuid"], b, placed)
                cpu0, wall0, lag0 = daemon.cpu_seconds(), time.monotonic(), await daemon.lag_buckets()
                calls = await self.offer(rate, place)
                cpu1, wall1 = daemon.cpu_seconds(), time.monotonic()
                await self.drain(calls, "controller")
                lag1 = await daemon.lag_buckets()
                ok = self.record_step("controller", rate, calls, cpu=100 * (cpu1 - cpu0) / (wall1 - wall0),
                                      lag=lag_p99_ms(lag0, lag1))
                if not ok:
                    break
                sustained = rate
        finally:
            sampling.cancel()
            await daemon.stop()
        return sustained, samples

    async def sample(self, daemon: Daemon, samples: list[tuple[int, int]]) -> None:
        while True:
            try:
                status = (await daemon.client.get("/status")).json()
                samples.append((int(status["active_calls"]), daemon.rss_kib()))
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            await asyncio.sleep(0.5)

    async def overload(self, workdir: Path, hook_url: str, rate: float) -> dict[str, Any]:
        """1.5x the sustained rate against a daemon limited to the sustained rate."""
        daemon = Daemon(workdir, self.args.talk, max_rate=rate)
        await daemon.ready()
        refused_ms: list[float] = []
        admitted: list[Call] = []
        unanswered = 0
        try:
            async def place() -> None:
                nonlocal unanswered
                b = self.b_number()
                started = time.perf_counter()
                try:
                    response = await daemon.client.post("/v1/calls", json={
                        "leg_a": LEG_A, "leg_b": b, "whisper": WHISPER, "webhook_url": hook_url})
                except httpx.TransportError:
                    unanswered += 1
                    return
                if response.status_code == 429:
                    refused_ms.append((time.perf_counter() - started) * 1000)
                elif response.status_code == 202:
                    admitted.append(Call("overload", response.json()["call_uuid"], b, time.time()))
                else:
                    raise refused("overload", response)
            await self.offer(rate * 1.5, place)
            await self.drain(admitted, "controller")
        finally:
            await daemon.stop()
        completed = sum(1 for c in admitted if self.webhooks.get(c.key, (0, {}))[1].get("status")
                        == "completed")
        return {"offered_rate": rate * 1.5, "admitted": len(admitted), "refused": len(refused_ms),
                "unanswered": unanswered,
                "admitted_completed": completed,
                "refusal_p99_ms": percentile(refused_ms, 0.99)}

    def record_step(self, lane: str, rate: float, calls: list[Call], cpu: float | None = None,
                    lag: float | None = None) -> bool:
        if lane == "controller":
            for call in calls:
                arrived = self.webhooks.get(call.key)
                if arrived:
                    at, data = arrived
                    call.status, call.ended_at, call.webhook_at = data["status"], data["ended_at"], at
                    whisper = data.get("whisper") or {}
                    answered = data.get("leg_a_answered_at")
                    if answered is not None:  # only calls whose leg A answered count
                        call.whisper_ready = bool(whisper.get("ready_at")
                                                  and whisper["ready_at"] <= answered)
        self.calls += calls
        self.step_calls[(lane, rate)] = calls
        completed = sum(1 for c in calls if c.status == "completed")
        success = completed / len(calls) if calls else 0.0
        observer = percentile(self.ami.lags_ms[self.lag_mark:], 0.99)
        self.lag_mark = len(self.ami.lags_ms)
        step = Step(lane, rate, len(calls), completed, round(success, 4), None, cpu, lag,
                    observer and round(observer, 2))
        self.report.steps.append(step)
        say(f"{lane:<10} {rate:5.1f} calls/s: {completed}/{len(calls)} completed "
            f"({100 * success:.1f} %)" + (f", controller CPU {cpu:.0f} %" if cpu is not None else "")
            + (f", event lag p99 {lag:.1f} ms" if lag is not None else "")
            + (f", bare AMI client lag p99 {observer:.1f} ms" if observer is not None else ""))
        return success >= SUCCESS_GOAL

    def gaps(self, invites: dict[str, float], up_to: float) -> None:
        """Whisper end to B's INVITE, per call, over the rates both lanes
        sustained (a saturated step says nothing about the controller)."""
        sustained = {(s.lane, s.rate) for s in self.report.steps
                     if s.success >= SUCCESS_GOAL and s.rate <= up_to}
        by_lane: dict[str, list[float]] = {"control": [], "controller": []}
        rate_of = {id(c): s.rate for s in self.report.steps for c in self.step_calls[(s.lane, s.rate)]}
        for call in self.calls:
            if (call.lane, rate_of.get(id(call))) not in sustained:
                continue
            a_id = call.key if call.lane == "control" else f"{call.key}-a"
            done = self.ami.whisper_done.get(a_id)
            invite = invites.get(call.b_number)
            if done is not None and invite is not None and call.lane in by_lane:
                by_lane[call.lane].append((invite - done) * 1000)
        self.report.gaps_ms = by_lane
        for step in self.report.steps:
            step_gaps = []
            for call in self.step_calls.get((step.lane, step.rate), []):
                a_id = call.key if call.lane == "control" else f"{call.key}-a"
                if call.b_number in invites and a_id in self.ami.whisper_done:
                    step_gaps.append((invites[call.b_number] - self.ami.whisper_done[a_id]) * 1000)
            step.gap_p99_ms = percentile(step_gaps, 0.99)

    async def run(self) -> Report:
        workdir = Path(tempfile.mkdtemp(prefix="callconnect-bench-"))
        whisper = await WhisperRenderer(MEDIA).render(WHISPER)
        switch_whisper = "/var/lib/callconnect/media/" + whisper.path.stem
        await self.ami.connect()
        app = web.Application()
        app.router.add_post("/hook", self.webhook)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        hook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        capture = Capture()
        try:
            say("control lane: bare AMI Originate into [bench-control]")
            control = await self.control_lane(switch_whisper)
            say(f"control lane sustained {control:g} calls/s; controller lane: the daemon's API")
            controller, samples = await self.controller_lane(workdir, hook_url)
            if self.args.smoke:
                return self.report
            # The sustained rate both lanes reached: the switch's own limit here.
            sustained = min(control, controller) or 1.0
            say(f"controller lane sustained {controller:g} calls/s; overload: 1.5x at a limit of "
                f"{sustained:g}/s")
            overload = await self.overload(workdir, hook_url, sustained)
        finally:
            invites = await asyncio.to_thread(capture.invites)
            await runner.cleanup()
            self.ami.manager.close()
        self.gaps(invites, min(control, controller))
        self.figures(control, controller, samples, overload)
        return self.report

    def figures(self, control: float, controller: float, samples: list[tuple[int, int]],
                overload: dict[str, Any]) -> None:
        steps = self.report.steps
        peak = [s for s in steps if s.lane == "controller" and s.rate <= (control or 1)]
        at_peak = peak[-1] if peak else None
        control_gap = percentile(self.report.gaps_ms["control"], 0.99)
        controller_gap = percentile(self.report.gaps_ms["controller"], 0.99)
        # Latencies over the rates both lanes sustained: a saturated step says
        # nothing about the controller.
        common = min(control, controller)
        ours = [c for s in steps if s.lane == "controller" and s.rate <= common
                for c in self.step_calls[(s.lane, s.rate)] if c.webhook_at and c.ended_at]
        webhook_p99 = percentile(((c.webhook_at - c.ended_at) * 1000 for c in ours), 0.99)  # type: ignore[operator]
        ready = [c.whisper_ready for c in self.calls
                 if c.lane == "controller" and c.whisper_ready is not None]
        slope = None
        if len({n for n, _ in samples}) > 2:
            slope = statistics.linear_regression([n for n, _ in samples], [r for _, r in samples]).slope
        def figure(name: str, value: Any, goal: str, met: bool | None, unit: str = "") -> None:
            self.report.figures.append({"figure": name, "value": value, "unit": unit, "goal": goal,
                                        "met": met})
        ratio = controller / control if control else None
        figure("sustained rate (>= 99.9 % success), controller / control", ratio and round(ratio, 3),
               ">= 0.95", ratio is not None and ratio >= 0.95, f"({controller:g} / {control:g} calls/s)")
        gap = None if controller_gap is None or control_gap is None else controller_gap - control_gap
        figure("whisper end -> leg B INVITE on the wire, p99, controller minus control "
               "(sustained rates)",
               gap and round(gap, 2), "<= 5 ms", gap is not None and gap <= 5, "ms")
        lag = at_peak.event_lag_p99_ms if at_peak else None
        figure("AMI event lag p99 at peak (histogram bucket bound)", lag, "<= 5 ms",
               lag is not None and lag <= 5, "ms")
        # The same moment seen by a bare AMI client: Asterisk's own delivery delay.
        bare = at_peak.observer_lag_p99_ms if at_peak else None
        excess = None if lag is None or bare is None else round(lag - bare, 2)
        figure("  of which the controller's own (minus a bare AMI client's p99)", excess,
               "<= 5 ms", excess is not None and excess <= 5, "ms")
        cpu = at_peak.cpu_percent if at_peak else None
        figure(f"controller CPU at {at_peak.rate if at_peak else '?'} calls/s (control's peak)",
               cpu and round(cpu, 1), "<= 25 % of one core", cpu is not None and cpu <= 25, "%")
        figure("controller memory per active call (RSS slope)", slope and round(slope, 1),
               "<= 64 KiB", slope is not None and slope <= 64, "KiB")
        figure("call end -> completion webhook received, p99 (sustained rates)",
               webhook_p99 and round(webhook_p99, 1),
               "<= 50 ms", webhook_p99 is not None and webhook_p99 <= 50, "ms")
        share = sum(ready) / len(ready) if ready else None
        figure("whisper audio ready before leg A answered", share, ">= 99.9 %",
               share is not None and share >= 0.999)
        admitted_ok = (overload["admitted_completed"] / overload["admitted"]
                       if overload["admitted"] else None)
        figure("at 1.5x: admitted calls that complete / admitted", admitted_ok, "1.0",
               admitted_ok == 1.0, f"({overload['admitted_completed']}/{overload['admitted']}, "
                                   f"{overload['refused']} refused, "
                                   f"{overload['unanswered']} unanswered in 10 s)")
        figure("at 1.5x: 429 answer time p99", overload["refusal_p99_ms"] and
               round(overload["refusal_p99_ms"], 2), "<= 10 ms",
               overload["refusal_p99_ms"] is not None and overload["refusal_p99_ms"] <= 10, "ms")


def print_table(report: Report) -> None:
    print()
    print(f"{'figure':<74} {'value':>18}  {'goal':<20} met")
    for f in report.figures:
        value = "-" if f["value"] is None else f"{f['value']} {f['unit']}".strip()
        print(f"{f['figure']:<74} {value:>18}  {f['goal']:<20} {'yes' if f['met'] else 'NO'}")
    print()


def chart(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for lane, style in (("control", "o-"), ("controller", "s-")):
        steps = [s for s in report.steps if s.lane == lane]
        left.plot([s.rate for s in steps], [100 * s.success for s in steps], style, label=lane)
        gaps = report.gaps_ms.get(lane, [])
        if gaps:
            right.hist(gaps, bins=40, alpha=0.6, label=f"{lane} (n={len(gaps)})")
    left.axhline(100 * SUCCESS_GOAL, color="grey", linestyle=":")
    left.set(xlabel="offered calls/s", ylabel="completed %", title="success vs rate")
    right.set(xlabel="ms", ylabel="calls", title="whisper end -> leg B INVITE on the wire")
    left.legend()
    right.legend()
    fig.suptitle(f"callconnect bench, {report.machine['cores']} cores, {report.machine['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+",
                        default=[1, 2, 4, 6, 8, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100])
    parser.add_argument("--step-seconds", type=float, default=15.0)
    parser.add_argument("--talk", type=int, default=4, help="seconds each call talks")
    parser.add_argument("--smoke", action="store_true",
                        help="a few calls at 1 call/s through both lanes, no overload and no "
                             "report files: fails unless every call completes (make test runs it)")
    args = parser.parse_args()
    if args.smoke:
        args.rates, args.step_seconds, args.talk = [1.0], 3.0, 2
    if os.geteuid() != 0:
        print("make bench drives the lab (chroot, tcpdump): run it as root", file=sys.stderr)
        return 2
    subprocess.run([LAB, "up", "asterisk"], check=True)  # the bench measures Asterisk alone
    try:
        report = asyncio.run(Bench(args).run())
    except BenchRefused as exc:
        print(f"[bench] stopped: {exc}", file=sys.stderr)
        return 1
    if args.smoke:
        short = [s for s in report.steps if s.success < 1.0]
        lanes = {s.lane for s in report.steps}
        if short or lanes != {"control", "controller"}:
            print(f"[bench] smoke failed: {short or 'a lane did not run'}", file=sys.stderr)
            return 1
        say("smoke: every call completed in both lanes")
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "latest.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    chart(report, OUT / "latest.png")
    print_table(report)
    say(f"wrote {OUT / 'latest.json'} and {OUT / 'latest.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
