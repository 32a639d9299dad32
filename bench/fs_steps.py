"""CPU and time per live step on the FreeSWITCH backend, against the Event
Socket peer (python -m bench.fs_steps [calls] [steps per call]; no lab, no
root).

The peer (tests/esl/peer/) runs in a process of its own and takes the
calls: each is claimed by the backend, plays a 20 ms file ``steps`` times
(each step sent once the one before has ended, as the live-call runner
does), and is hung up. Reported: this process's CPU (the asyncio and the
Event Socket threads) per step and per call, and how long ``execute`` of a
step took (what the step's round trips cost the call), median and p90.
Figures drift between runs on a shared machine: compare runs made back to
back."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time

from bench.common import REPO
from controller.backends.base import IncomingCall
from controller.backends.freeswitch.backend import FreeswitchBackend
from controller.config import FreeswitchConfig
from controller.core.commands import HangupLegs, PlayToLegA
from controller.core.events import Event, LegEnded, PlayFinished
from controller.core.outcomes import Leg

PASSWORD = "bench-steps-secret"
NUMBER = "+27115550900"

# Takes a call for each line on its stdin; ends when stdin closes.
PEER = f"""
import asyncio, sys
from tests.esl.peer import EslPeer

async def main() -> None:
    peer = EslPeer(password={PASSWORD!r})
    peer.unclaimed_after = 600
    await peer.start()
    print(peer.port, flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        await peer.call_in({NUMBER!r})
    await peer.stop()

asyncio.run(main())
"""


class Call:
    """One call's events, and a wake-up for each."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.changed = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()

    async def until(self, kind: type[Event], count: int) -> None:
        async with asyncio.timeout(10):
            while sum(isinstance(e, kind) for e in self.events) < count:
                self.changed.clear()
                await self.changed.wait()


async def run(calls: int, steps: int, audio: str) -> dict[str, float]:
    peer = subprocess.Popen([sys.executable, "-c", PEER], cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)  # its tasks cut short at the end
    assert peer.stdin is not None and peer.stdout is not None
    port = int(peer.stdout.readline())
    backend = FreeswitchBackend(FreeswitchConfig(port=port, password=PASSWORD,
                                                 action_timeout=5.0))
    incoming: asyncio.Queue[IncomingCall] = asyncio.Queue()

    async def announced(call: IncomingCall) -> None:
        incoming.put_nowait(call)

    backend.on_incoming = announced
    await backend.connect()
    took: list[float] = []
    try:
        cpu = time.process_time()
        for number in range(calls):
            peer.stdin.write("call\n")
            peer.stdin.flush()
            offered = await asyncio.wait_for(incoming.get(), 10)
            call_id, call = f"bench-{number}", Call()
            await backend.claim(offered, call_id, call)
            for step in range(steps):
                started = time.perf_counter()
                await backend.execute(call_id, PlayToLegA(f"p{step}", (audio,)))
                took.append(time.perf_counter() - started)
                await call.until(PlayFinished, step + 1)
            await backend.execute(call_id, HangupLegs((Leg.A,)))
            await call.until(LegEnded, 1)
            backend.forget(call_id)
        cpu = time.process_time() - cpu
    finally:
        await backend.close()
        peer.stdin.close()
        peer.wait(10)
    took.sort()
    return {"cpu_ms_per_step": cpu * 1000 / (calls * steps),
            "cpu_ms_per_call": cpu * 1000 / calls,
            "execute_ms_median": statistics.median(took) * 1000,
            "execute_ms_p90": took[int(len(took) * 0.9)] * 1000}


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    from tests.esl.peer import write_recording

    with tempfile.TemporaryDirectory() as tmp:
        audio = f"{tmp}/tick.wav"
        write_recording(audio, 0.02)
        figures = asyncio.run(run(calls, steps, audio))
    print(f"{calls} calls x {steps} plays: " + ", ".join(
        f"{name} {value:.2f}" for name, value in figures.items()))


if __name__ == "__main__":
    main()
