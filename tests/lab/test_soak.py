"""The soak run: minutes of calls on the real lab, with a webhook receiver
outage, a daemon SIGKILL and restart, and an Asterisk restart in the middle.
Afterwards every accepted call has a final state and exactly one completion
event id, delivered (a redelivery of that id after the crash is allowed);
nobody was dialed twice, as the switch itself saw it; Asterisk has no channels
left (the autouse fixture); and the daemon's memory is flat.

Dials are counted from AMI events on the test's own link, not from the
controller's report: an originated leg A is a ``Newchannel`` whose Uniqueid is
the call id plus ``-a`` (the Originate's ChannelId), and a leg B is a
``DialBegin`` from that channel. While Asterisk is down nothing can be dialed;
the link comes back by itself (panoramisk reconnects every second).

CALLCONNECT_SOAK_SECONDS sets how long calls are placed (default 150)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from panoramisk import Manager
from panoramisk.message import Message

from controller.backends.asterisk.events import LEG_A_SUFFIX
from controller.config import Config
from tests.conftest import Serve
from tests.lab.conftest import OBSERVER_SECRET, OBSERVER_USERNAME, DaemonProcess, api
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


class Dials:
    """Every leg A originated and leg B dialed, by call id, as Asterisk reports them."""

    def __init__(self) -> None:
        self.leg_a: dict[str, int] = defaultdict(int)
        self.leg_b: dict[str, list[str]] = defaultdict(list)  # call: dial strings

    def new_channel(self, _: Manager, message: Message) -> None:
        uniqueid = str(message.get("Uniqueid", ""))
        if uniqueid.endswith(LEG_A_SUFFIX):
            self.leg_a[uniqueid.removesuffix(LEG_A_SUFFIX)] += 1

    def dial_begin(self, _: Manager, message: Message) -> None:
        # Leg A's own Dial; an Originate's DialBegin has no Uniqueid.
        uniqueid = str(message.get("Uniqueid", ""))
        if uniqueid.endswith(LEG_A_SUFFIX) and message.get("DestUniqueid"):
            self.leg_b[uniqueid.removesuffix(LEG_A_SUFFIX)].append(str(message.get("DialString")))


async def watch_dials(config: Config, dials: Dials) -> Manager:
    manager = Manager(loop=asyncio.get_running_loop(), host=config.asterisk.host,
                      port=config.asterisk.port, username=OBSERVER_USERNAME,
                      secret=OBSERVER_SECRET, ping_delay=10, reconnect_timeout=1)
    manager.register_event("Newchannel", dials.new_channel)
    manager.register_event("DialBegin", dials.dial_begin)
    await manager.connect()
    deadline = time.monotonic() + 10
    while not getattr(manager, "authenticated", False):
        assert time.monotonic() < deadline, "the test's own AMI login did not succeed"
        await asyncio.sleep(0.1)
    return manager


def rss_mib(daemon: DaemonProcess) -> float:
    assert daemon.process is not None
    for line in Path(f"/proc/{daemon.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_soak_with_restarts_and_a_webhook_outage(
        start_daemon: Callable[..., DaemonProcess], serve: Serve, lab_config: Config) -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    hook = f"{await serve(app)}/hook"
    dials = Dials()
    manager = await watch_dials(lab_config, dials)
    daemon = start_daemon(**QUICK_PING)
    await daemon.ready()
    chooser = random.Random(11)
    accepted: list[str] = []
    refused = 0
    daemon_down = 0  # requests made while the daemon was killed and not yet back
    memory: list[tuple[float, float]] = []
    started = time.monotonic()
    outage = (SOAK_SECONDS * 0.25, SOAK_SECONDS * 0.45)
    # Killed during the webhook outage, so undelivered completions must survive
    # the crash; before the middle third, whose memory the end is compared with.
    kill_at = SOAK_SECONDS * 0.3
    killed = False
    back_at: float | None = None  # when the restarted daemon answered again
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
            if not killed and elapsed >= kill_at:
                # Between two requests, so no answer is lost with the process.
                killed = True
                daemon.signal(signal.SIGKILL)
                await asyncio.to_thread(daemon.wait, 10)
                daemon.start()  # the same store, port and log
                memory.clear()  # another process: its memory is measured afresh
            request = chooser.choices([c for _, c in CALLS], [w for w, _ in CALLS])[0]
            try:
                placed = await client.post("/v1/calls", json={**request, "webhook_url": hook})
            except httpx.TransportError:
                assert killed and back_at is None, "the daemon stopped answering"
                daemon_down += 1
                await asyncio.sleep(0.5)
                continue
            if killed and back_at is None:
                back_at = elapsed
            if placed.status_code == 202:
                accepted.append(placed.json()["call_uuid"])
            else:
                # The switch is down, or the restarted daemon has not reached it yet.
                assert placed.status_code == 503, placed.text
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
    manager.close()
    memory.append((time.monotonic() - started, rss_mib(daemon)))
    redelivered = 0
    for call_id in accepted:
        answers = receiver.answered[call_id]
        # One completion event per call. The same id may come again: a crash
        # between the receiver's 200 and the outbox noting it resends it.
        assert len({event_id for event_id, _ in answers}) == 1, f"{call_id}: {answers}"
        delivered = [status for _, status in answers].count(200)
        assert delivered >= 1, f"{call_id}: {answers}"
        redelivered += delivered > 1
    twice_a = {c: n for c, n in dials.leg_a.items() if n > 1}
    assert not twice_a, f"leg A originated more than once: {twice_a}"
    twice_b = {c: d for c, d in dials.leg_b.items() if len(d) != len(set(d))}
    assert not twice_b, f"leg B dialed more than once: {twice_b}"
    # Every call the switch saw was one the test placed (none placed on its own).
    assert set(dials.leg_a) <= set(accepted), set(dials.leg_a) - set(accepted)
    assert dials.leg_a, "the test's AMI link saw no call at all"

    assert back_at is not None
    middle = max(rss for at, rss in memory
                 if SOAK_SECONDS / 3 <= at < 2 * SOAK_SECONDS / 3 and at > back_at)
    end = memory[-1][1]
    retried = sum(1 for answers in receiver.answered.values() if len(answers) > 1)
    print(f"\nsoak: {len(accepted)} calls accepted, {refused} refused while Asterisk was down "
          f"or the daemon was reconnecting, {daemon_down} requests while the daemon was killed, "
          f"{retried} completion webhooks retried after the outage ({redelivered} delivered "
          f"again after the crash); {sum(dials.leg_a.values())} legs A originated; daemon RSS "
          f"{memory[0][1]:.1f} MiB after its restart, {middle:.1f} MiB mid-run, {end:.1f} MiB "
          "at the end")
    assert refused >= 1 and retried >= 1 and daemon_down >= 1, \
        "the restarts and the outage happened"
    assert end - middle <= FLAT_MEMORY_MIB, f"memory grew {end - middle:.1f} MiB: {memory}"
