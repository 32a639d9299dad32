"""make bench: the controller next to Asterisk's own limit, on the real lab.

Two lanes run the same call connect (whisper to leg A, then record and dial leg
B, bridge, a fixed talk time) at a rising rate until success falls under 99.9 %:

* control: a bare AMI Originate loop into the [bench-control] dialplan; no
  controller in the path. Its sustained rate is the switch's limit here.
* controller: the daemon's API placing the calls.

Both lanes run ``--runs`` times (the first over the whole ramp, the others
from ``--fine-from`` calls/s, where the steps are 5 calls/s apart) and the
sustained ratio is the median of the runs'; then one step (``--parts-rate``)
with the daemon's CPU counted by part (bench/cpu_parts.py), and 1.5x the
sustained rate offered to a daemon limited to it. Then the inbound lanes (bench/inbound.py):
callers calling a number the dialplan alone answers, and one set on the
daemon, with the same first action. Every controller figure is reported next
to its goal, and as a ratio to the control lane where the issue asks for one,
since absolute figures drift on a shared 2-core machine. Writes
docs/bench/latest.json, docs/bench/latest.png and docs/bench/latest-inbound.png
(not with --only or --smoke).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from controller.tts import WhisperRenderer

from .common import REPO, BenchRefused, percentile
from .cpu_parts import parts_per_call
from .hook_receiver import HookReceiver
from .inbound import InboundLanes
from .lanes import (
    B_PREFIX,
    LAB,
    LEG_A,
    MEDIA,
    AmiObserver,
    Call,
    Capture,
    Daemon,
    Step,
    asterisk_pid,
    cpu_seconds,
    failures_of,
    idle_cpu_rate,
    lag_p99_ms,
    machine,
    per_call,
    refused,
    say,
)
from .report import (
    SUCCESS_GOAL,
    Report,
    add_figures,
    add_inbound_figures,
    chart,
    inbound_chart,
    print_table,
    reasons,
    webhook_percentiles,
)

OUT = REPO / "docs" / "bench"
WHISPER = "Connecting you to a caller from the benchmark"


def call_connect(leg_b: str, hook_url: str) -> dict[str, Any]:
    """The request the controller lane and the overload lane place."""
    return {"leg_a": LEG_A, "leg_b": leg_b, "whisper": WHISPER, "webhook_url": hook_url}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ami = AmiObserver()
        self.report = Report(machine(), {"step_seconds": args.step_seconds, "talk_seconds": args.talk,
                                          "rates": args.rates, "runs": args.runs,
                                          "fine_from": args.fine_from, "whisper": WHISPER,
                                          "inbound_rates": args.inbound_rates})
        self.calls: list[Call] = []
        self.webhooks: dict[str, tuple[float, dict[str, Any]]] = {}
        self.serial = 0
        self.lag_mark = 0
        self.step_calls: dict[int, list[Call]] = {}  # id(step) -> its calls
        self.switch_pid = asterisk_pid()
        # The daemons' stores and logs: removed when the run ends well, kept when it does not.
        self.workdir = Path(tempfile.mkdtemp(prefix="callconnect-bench-"))

    def b_number(self) -> str:
        self.serial += 1
        return f"{B_PREFIX}{self.serial % 10000:04d}"

    def rates(self, run: int) -> list[float]:
        return self.args.rates if run == 1 else [r for r in self.args.rates
                                                 if r >= self.args.fine_from]

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

    async def control_lane(self, run: int, whisper: str) -> float:
        sustained = 0.0
        switch_idle = await idle_cpu_rate(self.switch_pid)
        for rate in self.rates(run):
            async def place() -> Call:
                call = Call("control", f"bench-ctl-{self.serial + 1}-a", self.b_number(), time.time())
                self.ami.calls[call.key] = call
                await self.ami.originate(call, whisper, self.args.talk)
                return call
            switch0, wall0 = cpu_seconds(self.switch_pid), time.monotonic()
            calls = await self.offer(rate, place)
            await self.drain(calls, "control")
            step = self.record_step(run, "control", rate, calls)
            step.switch_cpu_ms_per_call = per_call(
                cpu_seconds(self.switch_pid) - switch0, switch_idle, wall0, len(calls))
            if step.success < SUCCESS_GOAL:
                break
            sustained = rate
        return sustained

    async def controller_lane(self, run: int, hook_url: str,
                              samples: list[tuple[int, int]]) -> float:
        daemon = Daemon(self.workdir, self.args.talk)
        await daemon.ready()
        sustained = 0.0
        sampling = asyncio.create_task(self.sample(daemon, samples))
        idle, switch_idle = await asyncio.gather(idle_cpu_rate(daemon.process.pid),
                                                 idle_cpu_rate(self.switch_pid))
        place = self.placer(daemon, hook_url)
        try:
            for rate in self.rates(run):
                cpu0, wall0, lag0 = daemon.cpu_seconds(), time.monotonic(), await daemon.lag_buckets()
                switch0, waited0 = cpu_seconds(self.switch_pid), daemon.loop_waited_seconds()
                calls = await self.offer(rate, place)
                cpu1, wall1 = daemon.cpu_seconds(), time.monotonic()
                waited1 = daemon.loop_waited_seconds()
                await self.drain(calls, "controller")
                lag1 = await daemon.lag_buckets()
                step = self.record_step(run, "controller", rate, calls,
                                        cpu=100 * (cpu1 - cpu0) / (wall1 - wall0),
                                        lag=lag_p99_ms(lag0, lag1),
                                        loop_wait=100 * (waited1 - waited0) / (wall1 - wall0))
                step.cpu_ms_per_call = per_call(daemon.cpu_seconds() - cpu0, idle, wall0,
                                                len(calls))
                step.switch_cpu_ms_per_call = per_call(
                    cpu_seconds(self.switch_pid) - switch0, switch_idle, wall0, len(calls))
                if step.success < SUCCESS_GOAL:
                    break
                sustained = rate
        finally:
            sampling.cancel()
            await daemon.stop()
        return sustained

    def placer(self, daemon: Daemon, hook_url: str) -> Callable[[], Awaitable[Call]]:
        """What places one call of the controller lane through ``daemon``."""
        async def place() -> Call:
            b = self.b_number()
            placed = time.time()
            answer = await daemon.place(call_connect(b, hook_url))
            if answer is None:
                # Unanswered within the timeout: the step is past what the
                # controller sustains, which the ramp is there to find.
                return Call("controller", f"unanswered-{b}", b, placed, ended=True,
                            status="unanswered", why="POST /v1/calls not answered within 10 s")
            if answer.status != 202:
                raise refused("controller", answer)
            return Call("controller", answer.json()["call_uuid"], b, placed)
        return place

    async def cpu_by_part(self, hook_url: str, rate: float) -> dict[str, Any]:
        """One step of the controller lane with the daemon's CPU counted by
        part (bench.cpu_parts): what each part costs a call, adding up to
        the whole."""
        daemon = Daemon(self.workdir, self.args.talk, counted=self.workdir / "cpu-parts.json")
        await daemon.ready()
        try:
            before = await daemon.cpu_counts()
            calls = await self.offer(rate, self.placer(daemon, hook_url))
            await self.drain(calls, "controller")
            after = await daemon.cpu_counts()
        finally:
            await daemon.stop()
        completed = sum(1 for c in calls if c.key in self.webhooks)
        parts = parts_per_call(before, after, len(calls))
        total = round(sum(parts.values()), 3)
        say(f"CPU by part at {rate:g} calls/s, {completed}/{len(calls)} completed, asyncio's "
            f"own loop: {total} ms a call = "
            + ", ".join(f"{part} {ms:.2f}" for part, ms in parts.items()))
        return {"rate": rate, "calls": len(calls), "completed": completed,
                "ms_per_call": parts, "total_ms": total}

    async def sample(self, daemon: Daemon, samples: list[tuple[int, int]]) -> None:
        while True:
            try:
                status = (await daemon.client.get("/status")).json()
                samples.append((int(status["active_calls"]), daemon.rss_kib()))
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            await asyncio.sleep(0.5)

    async def overload(self, hook_url: str, rate: float) -> dict[str, Any]:
        """1.5x the sustained rate against a daemon limited to the sustained rate."""
        daemon = Daemon(self.workdir, self.args.talk, max_rate=rate)
        await daemon.ready()
        refused_ms: list[float] = []
        admitted: list[Call] = []
        unanswered = 0
        try:
            async def place() -> None:
                nonlocal unanswered
                b = self.b_number()
                started = time.perf_counter()
                answer = await daemon.place(call_connect(b, hook_url))
                if answer is None:
                    unanswered += 1
                elif answer.status == 429:
                    refused_ms.append((time.perf_counter() - started) * 1000)
                elif answer.status == 202:
                    admitted.append(Call("overload", answer.json()["call_uuid"], b, time.time()))
                else:
                    raise refused("overload", answer)
            await self.offer(rate * 1.5, place)
            await self.drain(admitted, "controller")
        finally:
            await daemon.stop()
        for call in admitted:
            self.read_webhook(call)
        return {"offered_rate": rate * 1.5, "admitted": len(admitted), "refused": len(refused_ms),
                "unanswered": unanswered,
                "admitted_completed": sum(1 for c in admitted if c.status == "completed"),
                "admitted_failures": failures_of(admitted),
                "refusal_p99_ms": percentile(refused_ms, 0.99)}

    def read_webhook(self, call: Call) -> None:
        """A controller call's outcome, from its completion webhook if it came."""
        arrived = self.webhooks.get(call.key)
        if not arrived:
            return
        at, data = arrived
        call.status, call.ended_at, call.webhook_at = data["status"], data["ended_at"], at
        if call.status != "completed":
            # How each leg's channel ended tells the switch's part from the phones'.
            causes = ", ".join(f"{leg} {ended}" for leg in ("leg_a", "leg_b")
                               if (ended := (data.get(leg) or {}).get("hangup_cause_text")))
            call.why = f"{call.status}: {data.get('reason')}" + (f" ({causes})" if causes else "")
        whisper = data.get("whisper") or {}
        answered = data.get("leg_a_answered_at")
        if answered is not None:  # only calls whose leg A answered count
            call.whisper_ready = bool(whisper.get("ready_at") and whisper["ready_at"] <= answered)

    def record_step(self, run: int, lane: str, rate: float, calls: list[Call],
                    cpu: float | None = None, lag: float | None = None,
                    loop_wait: float | None = None) -> Step:
        if lane == "controller":
            for call in calls:
                self.read_webhook(call)
        self.calls += calls
        completed = sum(1 for c in calls if c.status == "completed")
        success = completed / len(calls) if calls else 0.0
        observer = percentile(self.ami.lags_ms[self.lag_mark:], 0.99)
        self.lag_mark = len(self.ami.lags_ms)
        step = Step(run, lane, rate, len(calls), completed, round(success, 4), cpu_percent=cpu,
                    loop_wait_percent=loop_wait and round(loop_wait, 1),
                    event_lag_p99_ms=lag, observer_lag_p99_ms=observer and round(observer, 2),
                    webhook_ms=webhook_percentiles(calls) if lane == "controller" else None,
                    failures=failures_of(calls))
        self.step_calls[id(step)] = calls
        self.report.steps.append(step)
        p99 = (step.webhook_ms or {}).get("p99")
        say(f"{lane:<10} {rate:5.1f} calls/s: {completed}/{len(calls)} completed "
            f"({100 * success:.1f} %)" + (f", controller CPU {cpu:.0f} %" if cpu is not None else "")
            + (f" (its event loop waited for a CPU {loop_wait:.0f} % of the time)"
               if loop_wait is not None else "")
            + (f", event lag p99 {lag:.1f} ms" if lag is not None else "")
            + (f", bare AMI client lag p99 {observer:.1f} ms" if observer is not None else "")
            + (f", webhook p99 {p99:.0f} ms" if p99 is not None else "")
            + reasons(step.failures))
        return step

    def gaps(self, invites: dict[str, list[float]]) -> None:
        """Whisper end to B's INVITE, per call: each step's p99 (the report
        compares the lanes step by step)."""
        for step in self.report.steps:
            step_gaps = []
            for call in self.step_calls[id(step)]:
                a_id = call.key if call.lane == "control" else f"{call.key}-a"
                done = self.ami.whisper_done.get(a_id)
                if done is not None and call.b_number in invites:
                    # The INVITE of this call: the one nearest its whisper's end
                    # (the number's other calls are minutes away).
                    invite = min(invites[call.b_number], key=lambda at: abs(at - done))
                    step_gaps.append((invite - done) * 1000)
            step.gap_p99_ms = percentile(step_gaps, 0.99)

    async def run(self) -> Report:
        if self.args.only != "inbound":
            await self.outbound()
        if self.args.only != "outbound":
            say(f"inbound lanes: from {self.args.inbound_rates[0]:g} calls/s")
            await InboundLanes(self.report, self.args.inbound_rates, self.args.step_seconds,
                               self.switch_pid, self.workdir).run(self.args.talk)
            if not self.args.smoke:
                add_inbound_figures(self.report)
        return self.report

    async def outbound(self) -> None:
        whisper = await WhisperRenderer(MEDIA).render(WHISPER)
        switch_whisper = "/var/lib/callconnect/media/" + whisper.path.stem
        await self.ami.connect()
        receiver = HookReceiver(self.webhooks)
        await receiver.start()
        hook_url = receiver.url
        capture = Capture()
        sustained: dict[str, list[float]] = {"control": [], "controller": []}
        samples: list[tuple[int, int]] = []
        try:
            for run in range(1, self.args.runs + 1):
                say(f"run {run} of {self.args.runs}, from {self.rates(run)[0]:g} calls/s; "
                    "control lane: bare AMI Originate into [bench-control]")
                sustained["control"].append(await self.control_lane(run, switch_whisper))
                say(f"control lane sustained {sustained['control'][-1]:g} calls/s; "
                    "controller lane: the daemon's API")
                sustained["controller"].append(
                    await self.controller_lane(run, hook_url, samples))
                say(f"controller lane sustained {sustained['controller'][-1]:g} calls/s")
            self.report.sustained = sustained
            parts_rate = self.args.rates[0] if self.args.smoke else self.args.parts_rate
            say(f"CPU by part: {parts_rate:g} calls/s, the daemon counted by part")
            self.report.cpu_parts = await self.cpu_by_part(hook_url, parts_rate)
            if self.args.smoke:
                return
            limit = self.report.common_rate() or 1.0
            say(f"overload: 1.5x at a limit of {limit:g}/s")
            overload = await self.overload(hook_url, limit)
        finally:
            invites = await asyncio.to_thread(capture.invites)
            await receiver.stop()
            self.ami.manager.close()
        self.gaps(invites)
        ready = [c.whisper_ready for c in self.calls
                 if c.lane == "controller" and c.whisper_ready is not None]
        add_figures(self.report, samples, overload, ready)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+",
                        default=[1, 2, 4, 6, 8, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 70,
                                 80, 100])
    parser.add_argument("--runs", type=int, default=3,
                        help="runs of both lanes; the sustained ratio is their median")
    parser.add_argument("--fine-from", type=float, default=20.0,
                        help="runs after the first ramp from this rate (calls/s)")
    parser.add_argument("--step-seconds", type=float, default=15.0)
    parser.add_argument("--talk", type=int, default=4, help="seconds each call talks")
    parser.add_argument("--inbound-rates", type=float, nargs="+", default=[1, 2, 5, 10, 15, 20],
                        help="the inbound lanes' steps (calls/s)")
    parser.add_argument("--parts-rate", type=float, default=20.0,
                        help="the rate of the step that counts the daemon's CPU by part")
    parser.add_argument("--only", choices=["outbound", "inbound"],
                        help="run only these lanes; prints the figures and writes no report files")
    parser.add_argument("--smoke", action="store_true",
                        help="a few calls at 1 call/s through every lane, no overload and no "
                             "report files: fails unless every call completes (make test runs it)")
    args = parser.parse_args()
    if args.smoke:
        args.rates, args.step_seconds, args.talk, args.runs = [1.0], 3.0, 2, 1
        args.inbound_rates = [1.0]
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if os.geteuid() != 0:
        print("make bench drives the lab (chroot, tcpdump): run it as root", file=sys.stderr)
        return 2
    subprocess.run([LAB, "up", "asterisk"], check=True)  # the bench measures Asterisk alone
    bench = Bench(args)
    code = 1
    try:
        code = finish(args, asyncio.run(bench.run()))
    except BenchRefused as exc:
        print(f"[bench] stopped: {exc}", file=sys.stderr)
    finally:  # any other error too keeps what explains it
        if code == 0:
            shutil.rmtree(bench.workdir)
        else:
            print(f"[bench] the daemons' stores and logs are kept in {bench.workdir}",
                  file=sys.stderr)
    return code


def finish(args: argparse.Namespace, report: Report) -> int:
    """The smoke's verdict, or the figures printed (and written, for a whole run)."""
    if args.smoke:
        short = ([s for s in report.steps if s.success < 1.0]
                 + [s for s in report.inbound_steps if s.success < 1.0])
        expected = {"control", "controller"}
        ran = [{s.lane for s in report.steps} == expected or args.only == "inbound",
               {s.lane for s in report.inbound_steps} == expected or args.only == "outbound"]
        if short or not all(ran):
            print(f"[bench] smoke failed: {short or 'a lane did not run'}", file=sys.stderr)
            return 1
        say("smoke: every call completed in every lane")
        return 0
    if args.only:
        print_table(report)
        say(f"--only {args.only}: no report files written")
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "latest.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    chart(report, OUT / "latest.png")
    inbound_chart(report, OUT / "latest-inbound.png")
    print_table(report)
    say(f"wrote {OUT / 'latest.json'}, {OUT / 'latest.png'} and {OUT / 'latest-inbound.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
