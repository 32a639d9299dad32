"""The soak run: minutes of calls on the real lab, with a webhook receiver
outage and an Asterisk restart in the middle. Afterwards every accepted call has
a final state and exactly one delivered completion event id, Asterisk has no
channels left (the autouse fixture), and the daemon's memory is flat.

CALLCONNECT_SOAK_SECONDS sets how long calls are placed (default 150)."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import Serve
from tests.lab.conftest import DaemonProcess, api
from tests.lab.test_faults import QUICK_PING, run_lab

pytestmark = pytest.mark.lab

SOAK_SECONDS = float(os.environ.get("CALLCONNECT_SOAK_SECONDS", "150"))
# Memory may grow this much between the middle and the end of the run.
FLAT_MEMORY_MIB = 10.0
CALLS = (  # (weight, request)
    (7, {"leg_a": "+27115550101", "leg_b": "+27115550202", "time_limit": 2}),
    (1, {"leg_a": "+27115550101", "leg_b": "+27115550301", "ring_timeout": 2}),
    (1, {"leg_a": "+27115550101", "leg_b": "+27115550401"}),
    (1, {"leg_a": "+27115550301", "leg_b": "+27115550202", "ring_timeout": 2}),
)


class Receiver:
    """Answers 503 while ``down``; remembers what it answered to whom."""

    def __init__(self) -> None:
        self.down = False
        self.answered: dict[str, list[tuple[str, int]]] = defaultdict(list)  # call: (id, status)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        status = 503 if self.down else 200
        if body["type"] == "call.completed":
            self.answered[body["data"]["call_uuid"]].append(
                (request.headers["webhook-id"], status))
        return web.Response(status=status)


def rss_mib(daemon: DaemonProcess) -> float:
    assert daemon.process is not None
    for line in Path(f"/proc/{daemon.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_soak_with_a_restart_and_a_webhook_outage(
        start_daemon: Callable[..., DaemonProcess], serve: Serve) -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    hook = f"{await serve(app)}/hook"
    daemon = start_daemon(**QUICK_PING)
    await daemon.ready()
    chooser = random.Random(11)
    accepted: list[str] = []
    refused = 0
    memory: list[tuple[float, float]] = []
    started = time.monotonic()
    outage = (SOAK_SECONDS * 0.25, SOAK_SECONDS * 0.45)
    restart_at = SOAK_SECONDS * 0.5
    restarted = False

    async def restart_asterisk() -> None:
        await asyncio.to_thread(run_lab, "asterisk-stop")
        await asyncio.sleep(3)
        await asyncio.to_thread(run_lab, "asterisk-start")

    restart: asyncio.Task[None] | None = None
    async with api(daemon) as client:
        while (elapsed := time.monotonic() - started) < SOAK_SECONDS:
            receiver.down = outage[0] <= elapsed < outage[1]
            if not restarted and elapsed >= restart_at:
                restarted = True
                restart = asyncio.create_task(restart_asterisk())
            request = chooser.choices([c for _, c in CALLS], [w for w, _ in CALLS])[0]
            placed = await client.post("/v1/calls", json={**request, "webhook_url": hook})
            if placed.status_code == 202:
                accepted.append(placed.json()["call_uuid"])
            else:
                assert placed.status_code == 503, placed.text  # the switch is down
                refused += 1
            if not memory or elapsed - memory[-1][0] >= 5:
                memory.append((elapsed, rss_mib(daemon)))
            await asyncio.sleep(1.0)
        receiver.down = False
        assert restart is not None
        await restart
        await daemon.ready(want=200, timeout=30)

        states: dict[str, str] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for call_id in accepted:
                if states.get(call_id) != "ended":
                    states[call_id] = (await client.get(f"/v1/calls/{call_id}")).json()["state"]
            if all(state == "ended" for state in states.values()):
                break
            await asyncio.sleep(1)
    unfinished = {c: s for c, s in states.items() if s != "ended"}
    assert not unfinished, f"{len(unfinished)} accepted calls never ended: {unfinished}"

    deadline = time.monotonic() + 60
    while any(not any(status == 200 for _, status in receiver.answered[c]) for c in accepted):
        assert time.monotonic() < deadline, "completion webhooks still undelivered"
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # a duplicate would show up now
    memory.append((time.monotonic() - started, rss_mib(daemon)))
    for call_id in accepted:
        answers = receiver.answered[call_id]
        assert len({event_id for event_id, _ in answers}) == 1, f"{call_id}: {answers}"
        assert [status for _, status in answers].count(200) == 1, f"{call_id}: {answers}"

    middle = max(rss for at, rss in memory if SOAK_SECONDS / 3 <= at < 2 * SOAK_SECONDS / 3)
    end = memory[-1][1]
    retried = sum(1 for answers in receiver.answered.values() if len(answers) > 1)
    print(f"\nsoak: {len(accepted)} calls accepted, {refused} refused while Asterisk was down, "
          f"{retried} completion webhooks retried after the outage; daemon RSS "
          f"{memory[0][1]:.1f} MiB at start, {middle:.1f} MiB mid-run, {end:.1f} MiB at the end")
    assert refused >= 1 and retried >= 1, "the restart and the outage happened"
    assert end - middle <= FLAT_MEMORY_MIB, f"memory grew {end - middle:.1f} MiB: {memory}"
