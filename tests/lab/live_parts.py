"""The parts of a live-call test through the daemon, on either lab switch:
what sets the switches apart, agent phones of the test's own (SIPp on their
own ports, reached as sip: URIs), a URL that answers actions (incoming_url,
action_url, dial whom) on loopback, and what a loopback capture says the
phones heard. The fixtures that start them are in live_fixtures.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.lab.callers import CALLER_MEDIA_PORT
from tests.lab.capture import SOUND_RMS, Packet, rtp_rms

REPO = Path(__file__).resolve().parents[2]
PHONES = REPO / "sip-lab" / "phones"
NUMBER = "+27115550900"  # a number the test configures on the daemon
UNKNOWN_NUMBER = "+27115550901"  # configured nowhere
CALLER = "+27115550999"
CUSTOMER = "+27115550202"  # the lab's answering phone lab-answer-b (udp 5072)
# The agents' own ports: clear of the lab phones (5071-5076), the caller
# (5091, media 16110) and test_routing's phones (5081-, media 16110-).
AGENT_PORTS = (5093, 5094)


@dataclass(frozen=True)
class LabSwitch:
    """The switch a live-call test runs on (each lab's conftest.py gives its
    own as the ``lab_switch`` fixture): where it takes incoming calls, and
    what a calling phone sees where the two switches differ."""

    sip_address: str
    # An unanswered caller at its idle timeout: Asterisk hangs up with cause
    # 19 (480); FreeSWITCH with its hold limit's RECOVERY_ON_TIMER_EXPIRE (504).
    idle_unanswered: str


@dataclass
class Agent:
    """A SIPp phone that takes one call as its scenario says."""

    port: int
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, port: int, behaviour: str) -> Agent:
        """A phone on ``port`` running sip-lab/phones/``behaviour``."""
        process = subprocess.Popen(
            ["sipp", "-sf", str(PHONES / behaviour), "-i", "127.0.0.1", "-p", str(port),
             "-mi", "127.0.0.1", "-mp", str(16100 + 10 * (port - 5080)), "-nostdin", "-m", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return cls(port, process)

    @property
    def uri(self) -> str:
        return f"sip:agent{self.port}@127.0.0.1:{self.port}"

    @property
    def media_port(self) -> int:
        return 16100 + 10 * (self.port - 5080)

    def finished(self, timeout: float = 10) -> int | None:
        """Its exit status once its call is over (killed after ``timeout``: None)."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


@dataclass
class ActionsUrl:
    """A real HTTP server on loopback that a live call asks for actions (a
    POST, incoming_url or action_url) or whom to dial (a GET, dial whom). It
    answers each request with the next (status, body, delay) of ``answers``
    (the last one again once they run out) and keeps what it was asked."""

    answers: list[tuple[int, str, float]]
    bodies: list[dict[str, Any]] = field(default_factory=list)
    raw_bodies: list[bytes] = field(default_factory=list)  # as received, to verify signatures on
    headers: list[dict[str, str]] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)
    asked: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            raw = await request.read()
            self.raw_bodies.append(raw)
            self.bodies.append(json.loads(raw))
            self.headers.append({name.lower(): value for name, value in request.headers.items()})
        self.queries.append(dict(request.query))
        self.asked.set()
        status, body, delay = self.answers[min(len(self.queries), len(self.answers)) - 1]
        await asyncio.sleep(delay)
        kind = "text/plain" if request.method == "GET" else "application/json"
        return web.Response(status=status, text=body, content_type=kind)

    async def first_body(self, timeout: float = 30) -> dict[str, Any]:
        await asyncio.wait_for(self.asked.wait(), timeout)
        return self.bodies[0]


StartActionsUrl = Callable[..., Awaitable[ActionsUrl]]


def answer(*actions: dict[str, Any], delay: float = 0.0) -> tuple[int, str, float]:
    """A 200 answer giving these actions."""
    return 200, json.dumps({"actions": list(actions)}), delay


def entered(result: dict[str, Any], state: str) -> float:
    """When the call entered ``state`` (unix time), from its timeline."""
    return float(next(step["at"] for step in result["timeline"] if step["to"] == state))


def sound_times(packets: list[Packet], port: int) -> list[float]:
    """When each 20 ms frame of sound that reached ``port`` arrived (unix time)."""
    return [p.at for p in packets if p.dport == port and rtp_rms(p.payload) > SOUND_RMS]


def sound_to(packets: list[Packet], port: int, before: float = float("inf"),
             after: float = 0.0) -> int:
    """How many 20 ms frames of sound reached ``port`` between the two times."""
    return sum(1 for at in sound_times(packets, port) if after <= at < before)


def sound_to_caller(packets: list[Packet], before: float = float("inf"),
                    after: float = 0.0) -> int:
    return sound_to(packets, CALLER_MEDIA_PORT, before, after)


def sip_to(packets: list[Packet], port: int, method: str) -> list[str]:
    """The SIP requests of one method sent to ``port``, as text."""
    return [p.payload.decode(errors="replace") for p in packets
            if p.dport == port and p.payload.startswith(f"{method} ".encode())]
