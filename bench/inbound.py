"""make bench's inbound lanes: SIPp callers call in to the lab's Asterisk at a
rising rate, and every call gets the same first action (the same greeting
file played, a hold of HOLD_SECONDS, then the switch hangs up):

* control: a number the lab's dialplan alone answers ([bench-inbound-control]
  in sip-lab/asterisk/extensions.conf); no controller in the path;
* controller: a number set on the daemon (``python -m controller daemon``)
  over its API, whose actions are play, pause and hangup: the controller
  claims each call and drives it.

Each lane steps through its rates until a step's success falls under
99.9 %. Per step: the calls completed; the controller's CPU per call and
Asterisk's (as the outbound lanes measure them); and, on the switch's clock,
from a bare AMI observer of the caller's channel (bench/inbound_calls.py):
answer -> first action (Newstate Up to the Newexten that starts Playback) and
arrival -> first action (from its Newchannel), where the controller's claim
shows: on Asterisk the first action that needs audio answers the call.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from panoramisk import Manager
from panoramisk.message import Message

from controller.tts import WhisperRenderer

from .common import REPO, BenchRefused, connect_watching
from .inbound_calls import CallerChannel, ChannelLog, InboundStep, inbound_step
from .lanes import (
    ACTIONS,
    LAB,
    MEDIA,
    Daemon,
    cpu_seconds,
    idle_cpu_rate,
    per_call,
    say,
)
from .report import SUCCESS_GOAL, Report, reasons

CONTROL_NUMBER = "+27115550950"  # the lab's dialplan sends it to [bench-inbound-control]
CONTROLLER_NUMBER = "+27115550951"  # set on the daemon by the bench
CALLER = "+27115550998"
CALL_IN = REPO / "sip-lab" / "phones" / "call-in.xml"
# Speech the caller sends once answered, as a phone sends its audio at once:
# Asterisk's Answer() waits up to 500 ms for the caller's first audio frame
# before the dialplan goes on, so a silent caller would time that wait.
SPEECH = Path("/usr/share/sip-tester/g711a.pcap")
SWITCH_SIP = "127.0.0.1:5060"
# The callers' own ports: clear of the lab phones (5071-5076, media 16010-16060)
# and of the lab tests' caller (5091, 16110).
CALLER_SIP_PORT, CALLER_MEDIA_PORT = 5093, 16130
GREETING_TEXT = "Thank you for calling the benchmark."
GREETING = "greeting.wav"  # in ACTIONS; [bench-inbound-control] plays the same file
HOLD_SECONDS = 2  # after the greeting: [bench-inbound-control]'s Wait(2)
SETTLE_SECONDS = 3.0
_FINAL = re.compile(r"\bfinal ([0-9]{3})\b")
# SIP answers that say the setup is wrong, not that the switch is loaded: the
# number is unknown (404) or refused (403).
_SETUP_ERRORS = {"403", "404"}
_OBSERVED = ("Event: (Newchannel|Newstate|Hangup)[[:space:]]",
             "Event: Newexten[[:space:]].*Application: Playback[[:space:]]")


class InboundObserver:
    """A bare AMI client's view of the callers' channels (its own lab
    account, which reads the dialplan's Newexten)."""

    def __init__(self) -> None:
        self.log = ChannelLog(frozenset({CONTROL_NUMBER, CONTROLLER_NUMBER}))
        self.manager = Manager(host="127.0.0.1", port=5038, username="lab-bench-inbound",
                               secret="lab-bench-inbound", events="call,dialplan", ping_delay=10)
        self.manager.register_event("*", self.on_event)

    async def connect(self) -> None:
        await connect_watching(self.manager, _OBSERVED)

    def on_event(self, manager: Manager, event: Message) -> None:
        self.log.feed(event)

    def close(self) -> None:
        self.manager.close()


def check_control_dialplan() -> None:
    """The control number must reach [bench-inbound-control]: without it the
    call would ring the controller's inbound dialplan, and the lane would
    measure nothing."""
    shown = subprocess.run([LAB, "cli", f"dialplan show {CONTROL_NUMBER}@callconnect-inbound"],
                           capture_output=True, text=True, timeout=30).stdout
    if "bench-inbound-control" not in shown:
        raise BenchRefused(f"inbound control lane: {CONTROL_NUMBER} does not reach "
                           "[bench-inbound-control] in the lab's dialplan; `sip-lab/lab up` "
                           "loads it from sip-lab/asterisk/extensions.conf")


async def prepare_greeting() -> None:
    """The greeting both lanes play, as a file of the operator's: the
    controller's play names it, the control dialplan plays its path."""
    ACTIONS.mkdir(parents=True, exist_ok=True)
    rendered = await WhisperRenderer(MEDIA).render(GREETING_TEXT)
    shutil.copyfile(rendered.path, ACTIONS / GREETING)


def number_actions() -> list[dict[str, object]]:
    """The controller lane's actions: [bench-inbound-control]'s, step for step."""
    return [{"type": "play", "file": GREETING}, {"type": "pause", "seconds": HOLD_SECONDS},
            {"type": "hangup"}]


class InboundLanes:
    def __init__(self, report: Report, rates: list[float], step_seconds: float,
                 switch_pid: int, workdir: Path) -> None:
        self.report, self.rates, self.step_seconds = report, rates, step_seconds
        self.switch_pid, self.workdir = switch_pid, workdir
        self.observer = InboundObserver()

    async def run(self, talk: int) -> None:
        check_control_dialplan()
        await prepare_greeting()
        await self.observer.connect()
        try:
            say(f"inbound control lane: SIPp callers to {CONTROL_NUMBER}, the dialplan alone")
            await self.lane("control", CONTROL_NUMBER, None)
            say(f"inbound controller lane: SIPp callers to {CONTROLLER_NUMBER}, set on the daemon")
            daemon = Daemon(self.workdir, talk)
            try:
                await daemon.ready()
                response = await daemon.client.put(
                    f"/v1/numbers/{quote(CONTROLLER_NUMBER, safe='')}",
                    json={"actions": number_actions()})
                if response.status_code != 200:
                    raise BenchRefused(f"inbound controller lane: PUT /v1/numbers answered "
                                       f"{response.status_code}: {response.text[:500]}")
                await self.lane("controller", CONTROLLER_NUMBER, daemon)
            finally:
                await daemon.stop()
        finally:
            self.observer.close()

    async def lane(self, lane: str, number: str, daemon: Daemon | None) -> None:
        pids = {"switch": self.switch_pid} | ({"controller": daemon.process.pid} if daemon else {})
        # Past what the start (or the lane before) still does, so idle is idle.
        await asyncio.sleep(SETTLE_SECONDS)
        idle = dict(zip(pids, await asyncio.gather(*(idle_cpu_rate(p) for p in pids.values())),
                        strict=True))
        for rate in self.rates:
            mark, wall0 = len(self.observer.log.order), time.monotonic()
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            offered = await self.call_in(lane, number, rate)
            channels = await self.drained(mark, number)
            step = inbound_step(lane, rate, offered, channels)
            cost = {name: per_call(cpu_seconds(pid) - cpu0[name], idle[name], wall0, offered)
                    for name, pid in pids.items()}
            step.switch_cpu_ms_per_call, step.cpu_ms_per_call = cost["switch"], cost.get("controller")
            self.report.inbound_steps.append(step)
            say(describe(step))
            if step.success < SUCCESS_GOAL:
                return

    async def call_in(self, lane: str, number: str, rate: float) -> int:
        """``rate`` calls a second for a step, from one SIPp process; the calls
        offered."""
        count = max(1, round(rate * self.step_seconds))
        log = self.workdir / f"inbound-{lane}-{rate:g}.log"
        errors = log.with_suffix(".errors")
        argv = ["sipp", "-sf", str(self.scenario()), "-s", number, "-key", "caller", CALLER,
                "-i", "127.0.0.1", "-p", str(CALLER_SIP_PORT), "-mi", "127.0.0.1",
                "-mp", str(CALLER_MEDIA_PORT), "-r", f"{rate:g}", "-m", str(count),
                "-l", "5000", "-nostdin", "-trace_logs", "-log_file", str(log),
                "-trace_err", "-error_file", str(errors), SWITCH_SIP]
        process = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL,
                                                       stderr=subprocess.DEVNULL)
        try:
            # Each call waits at most 60 s for the switch (call-in.xml).
            code = await asyncio.wait_for(process.wait(), count / rate + 90)
        except TimeoutError:
            process.kill()
            await process.wait()
            code = None  # its calls count as not completed
        if code not in (None, 0, 1):  # 0: every call succeeded; 1: some failed
            shown = errors.read_text()[-1000:] if errors.exists() else ""
            raise BenchRefused(f"inbound {lane} lane: sipp exited {code}: {shown}")
        finals = _FINAL.findall(log.read_text()) if log.exists() else []
        wrong = sorted(set(finals) & _SETUP_ERRORS)
        if wrong:
            raise BenchRefused(f"inbound {lane} lane: the switch turned calls to {number} away "
                               f"with SIP {', '.join(wrong)}; is the number set up? (the "
                               f"daemon's log is in {self.workdir})")
        return count

    def scenario(self) -> Path:
        """call-in.xml, the caller speaking once answered."""
        scenario = self.workdir / "inbound-call-in.xml"
        if not scenario.exists():
            if not SPEECH.is_file():
                raise BenchRefused(f"inbound lanes: no {SPEECH}; it comes with Debian's "
                                   "sip-tester (sudo make install)")
            template = CALL_IN.read_text()
            start, end = template.index("<!-- steps -->"), template.index("<!-- /steps -->")
            scenario.write_text(template[:start] + f'<nop><action><exec play_pcap_audio="{SPEECH}"/>'
                                "</action></nop>\n  " + template[end:])
        return scenario

    async def drained(self, mark: int, number: str) -> list[CallerChannel]:
        """The step's channels once the switch has hung all of them up (SIPp
        has seen every call end by now; the events may trail it)."""
        deadline = time.monotonic() + 10
        channels = self.observer.log.since(mark, number)
        while time.monotonic() < deadline and any(c.hung_up is None for c in channels):
            await asyncio.sleep(0.2)
            channels = self.observer.log.since(mark, number)
        return channels


def _ms(figures: dict[str, float | None]) -> str:
    return " / ".join("-" if figures.get(q) is None else f"{figures[q]:.1f}"
                      for q in ("p50", "p99"))


def describe(step: InboundStep) -> str:
    return (f"inbound {step.lane:<10} {step.rate:5.1f} calls/s: {step.completed}/{step.offered} "
            f"completed ({100 * step.success:.1f} %), answer -> first action p50 / p99 "
            f"{_ms(step.answer_to_action_ms)} ms, arrival -> first action "
            f"{_ms(step.arrival_to_action_ms)} ms"
            + (f", controller CPU {step.cpu_ms_per_call:.2f} ms/call"
               if step.cpu_ms_per_call is not None else "")
            + (f", Asterisk CPU {step.switch_cpu_ms_per_call:.2f} ms/call"
               if step.switch_cpu_ms_per_call is not None else "")
            + reasons(step.failures))

