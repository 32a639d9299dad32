"""The AMI event path on recorded wire text, without a switch: events per
second through panoramisk's parser alone, and through parser + translator +
call core (what the controller does per event). Printed with their ratio."""

from __future__ import annotations

import re
import time
from pathlib import Path

from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from controller.backends.asterisk.events import AmiEventTranslator
from controller.core.commands import ChooseTargets
from controller.core.events import RouteExhausted
from controller.core.machine import CallConnect
from controller.core.outcomes import CallStatus
from controller.core.plan import Attempt, CallPlan

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "ami"
ROUNDS = 300


class Sink:
    def __init__(self, handle: object = None) -> None:
        self.count = 0
        self.handle = handle

    def dispatch(self, message: Message) -> None:
        self.count += 1
        if callable(self.handle):
            self.handle(message)


def streams() -> list[tuple[str, bytes]]:
    found = []
    for path in sorted(FIXTURES.glob("*.ami")):
        wire = path.read_bytes()
        match = re.search(rb"Uniqueid: ([0-9a-f-]{36})-a\r\n", wire)
        if match:
            found.append((match.group(1).decode(), wire))
    return found


def parse_only(recorded: list[tuple[str, bytes]]) -> tuple[int, float]:
    sink = Sink()
    started = time.perf_counter()
    for _ in range(ROUNDS):
        for _, wire in recorded:
            protocol = AMIProtocol()
            protocol.connection_made(transport=None)
            protocol.factory = sink
            protocol.data_received(wire)
    return sink.count, time.perf_counter() - started


def full_path(recorded: list[tuple[str, bytes]]) -> tuple[int, float]:
    handled = 0
    started = time.perf_counter()
    for _ in range(ROUNDS):
        for call_id, wire in recorded:
            translator = AmiEventTranslator()
            translator.watch(call_id)
            plan = CallPlan(call_id, "+27115550101", "+27115550202", ring_timeout=30, time_limit=60,
                            whisper_audio="/m/w", recording_file="/r/x.wav",
                            first_attempt=Attempt(("+27115550202",), 30))
            core = CallConnect(plan, created_at=0.0)
            core.start()

            def handle(message: Message, translator: AmiEventTranslator = translator,
                       core: CallConnect = core) -> None:
                for routed in translator.translate(message, 0.0):
                    if not core.finished:
                        for command in core.handle(routed.event):
                            if isinstance(command, ChooseTargets):
                                # One number: the route has run out (the router's I/O
                                # is not on this path).
                                core.handle(RouteExhausted(routed.event.at, CallStatus.FAILED,
                                                           "nobody more to ring", "/m/s"))

            sink = Sink(handle)
            protocol = AMIProtocol()
            protocol.connection_made(transport=None)
            protocol.factory = sink
            protocol.data_received(wire)
            handled += sink.count
    return handled, time.perf_counter() - started


def main() -> None:
    recorded = streams()
    parsed, parse_seconds = parse_only(recorded)
    handled, full_seconds = full_path(recorded)
    parse_rate, full_rate = parsed / parse_seconds, handled / full_seconds
    print(f"[micro] recorded AMI streams: {len(recorded)} calls, {parsed // ROUNDS} events, "
          f"x{ROUNDS}")
    print(f"[micro] panoramisk parse only:          {parse_rate:12,.0f} events/s")
    print(f"[micro] parse + translator + call core: {full_rate:12,.0f} events/s "
          f"({full_rate / parse_rate:.2f} of parse-only)")


if __name__ == "__main__":
    main()
