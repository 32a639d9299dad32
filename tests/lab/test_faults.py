"""Faults survived, on the real lab: Asterisk restarted (idle and mid-call, shut
down or killed), an AMI link that goes silent without a FIN, an action Asterisk
does not answer in time, malformed and split AMI frames, an Originate Asterisk
refuses, and a full disk under the store."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.app import make_backend
from controller.config import load_config
from controller.errors import SwitchActionFailed
from tests.conftest import StartReceiver, WebhookReceiver
from tests.lab.ami_proxy import AmiProxy
from tests.lab.conftest import LAB, LAB_CONFIG, DaemonProcess, api, log_events, wait_for_state
from tests.lab.live_parts import entered

pytestmark = pytest.mark.lab

# A heartbeat fast enough for a test to see a silent link dropped in seconds.
QUICK_PING = {"CALLCONNECT_ASTERISK_PING_INTERVAL": "1", "CALLCONNECT_ASTERISK_PING_TIMEOUT": "1"}
BRIDGED_CALL = {"leg_a": "+27115550101", "leg_b": "+27115550202"}


def run_lab(*args: str) -> None:
    done = subprocess.run([str(LAB), *args], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, f"sip-lab/lab {' '.join(args)} failed: {done.stdout}{done.stderr}"


@pytest.fixture
def asterisk_comes_back(lab: None) -> Iterator[None]:
    """Whatever a test does to Asterisk, the next test finds it running."""
    yield
    run_lab("asterisk-start")


async def completions(receiver: WebhookReceiver, call_id: str,
                      timeout: float = 30.0) -> list[dict[str, Any]]:
    """The call.completed webhooks the receiver got for a call, once one came
    (plus a moment, for a duplicate to show up)."""
    deadline = time.monotonic() + timeout
    def got() -> list[dict[str, Any]]:
        return [b for b in receiver.bodies
                if b["type"] == "call.completed" and b["data"]["call_uuid"] == call_id]
    while not got():
        assert time.monotonic() < deadline, f"no call.completed for {call_id}"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    return got()


async def status_becomes(daemon: DaemonProcess, code: int, timeout: float) -> float:
    """Seconds until /status answers ``code``."""
    started = time.monotonic()
    await daemon.ready(want=code, timeout=timeout)
    return time.monotonic() - started


async def test_asterisk_restart_while_idle(
        start_daemon: Callable[..., DaemonProcess], asterisk_comes_back: None) -> None:
    daemon = start_daemon()
    await daemon.ready()
    run_lab("asterisk-stop")
    down = await daemon.ready(want=503, timeout=5)
    assert down["components"]["switch"]["status"] == "fail"
    assert "reconnecting" in down["components"]["switch"]["reason"]
    async with api(daemon) as client:
        refused = await client.post("/v1/calls", json={**BRIDGED_CALL, "time_limit": 2})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error_id"] == "switch-unavailable"
        assert (await client.get("/v1/calls")).json()["calls"] == [], "a refused call is not kept"
        deadline = time.monotonic() + 20
        while len(log_events(daemon, "ami.reconnect_failed")) < 2:  # it backs off meanwhile
            assert time.monotonic() < deadline, "no second reconnect attempt"
            await asyncio.sleep(0.2)
        run_lab("asterisk-start")
        await daemon.ready(want=200, timeout=15)
        call_id = (await client.post("/v1/calls", json={**BRIDGED_CALL, "time_limit": 2})
                   ).json()["call_uuid"]
        ended = await wait_for_state(client, call_id, "ended")
        assert ended["status"] == "completed"
        metrics = (await client.get("/metrics")).text
    assert "callconnect_switch_reconnects_total 1.0" in metrics
    waits = [e["retry_in"] for e in log_events(daemon, "ami.reconnect_failed")]
    assert len(waits) >= 2 and waits == sorted(waits) and waits[-1] > waits[0], \
        f"reconnects back off: {waits}"


@pytest.mark.parametrize("how", ["shutdown", "crash"])
async def test_asterisk_restart_mid_call(
        how: str, start_daemon: Callable[..., DaemonProcess], webhook_receiver: StartReceiver,
        asterisk_comes_back: None) -> None:
    """Every live call gets a final state and exactly one completion webhook."""
    receiver = await webhook_receiver()
    daemon = start_daemon()
    await daemon.ready()
    async with api(daemon) as client:
        call_id = (await client.post("/v1/calls", json={
            **BRIDGED_CALL, "time_limit": 60, "webhook_url": receiver.url})).json()["call_uuid"]
        await wait_for_state(client, call_id, "bridged")
        await asyncio.sleep(1)
        run_lab("asterisk-stop", *(["--kill"] if how == "crash" else []))
        await daemon.ready(want=503, timeout=5)
        run_lab("asterisk-start")
        await daemon.ready(want=200, timeout=15)
        ended = await wait_for_state(client, call_id, "ended", timeout=20)
    result = ended["result"]
    # The two talked, then the switch ended the call.
    assert ended["status"] == "completed", result["reason"]
    assert result["talk_seconds"] >= 1
    if how == "crash":
        # A crash runs no hangup handler: no outcome is kept, and the result says so.
        assert result["hangup_by"] == "switch"
        assert "the switch kept no outcome" in result["reason"]
    completed = await completions(receiver, call_id)
    assert len(completed) == 1, f"one completion webhook, got {len(completed)}"
    assert completed[0]["data"]["status"] == ended["status"]


async def test_a_silent_link_is_dropped_by_the_heartbeat_and_the_call_goes_on(
        start_daemon: Callable[..., DaemonProcess], webhook_receiver: StartReceiver) -> None:
    """No FIN, no RST: Asterisk just stops answering. An unanswered Ping drops
    the link within ping_interval + ping_timeout; the new link finds the call
    still live on the switch and follows it to its real end."""
    proxy = AmiProxy()
    port = await proxy.start()
    receiver = await webhook_receiver()
    daemon = start_daemon(CALLCONNECT_ASTERISK_PORT=str(port), **QUICK_PING)
    try:
        await daemon.ready()
        async with api(daemon) as client:
            call_id = (await client.post("/v1/calls", json={
                **BRIDGED_CALL, "time_limit": 10, "webhook_url": receiver.url})
                       ).json()["call_uuid"]
            await wait_for_state(client, call_id, "bridged")
            proxy.go_silent()
            noticed = await status_becomes(daemon, 503, timeout=10)
            await daemon.ready(want=200, timeout=15)
            ended = await wait_for_state(client, call_id, "ended", timeout=30)
    finally:
        await proxy.close()
    assert noticed < 1 + 1 + 2, f"the silent link was noticed after {noticed:.1f} s"
    assert log_events(daemon, "ami.ping_unanswered"), "dropped by the heartbeat"
    assert proxy.connections == 2
    assert ended["status"] == "completed"
    assert ended["result"]["hangup_by"] == "time_limit", "followed to its real end"
    assert ended["result"]["talk_seconds"] == pytest.approx(10, abs=1.5)
    assert len(await completions(receiver, call_id)) == 1


async def test_an_action_unanswered_in_time_names_the_setting_that_bounds_it(lab: None) -> None:
    proxy = AmiProxy()
    port = await proxy.start()
    config = load_config(LAB_CONFIG, environ={"CALLCONNECT_ASTERISK_PORT": str(port),
                                              "CALLCONNECT_ASTERISK_ACTION_TIMEOUT": "0.5"})
    backend = make_backend(config)
    try:
        await backend.connect()
        proxy.go_silent()
        with pytest.raises(SwitchActionFailed) as caught:
            await backend.active_channels()
    finally:
        await backend.close()
        await proxy.close()
    assert caught.value.message == ("Asterisk did not answer CoreShowChannels within 0.5 s "
                                    "([asterisk] action_timeout)")


async def test_malformed_and_split_frames_are_skipped(
        start_daemon: Callable[..., DaemonProcess]) -> None:
    """Asterisk's stream arrives in reads of 1-40 bytes with a malformed or
    unknown frame after every real one; the call connects and the link stays up."""
    proxy = AmiProxy(chunk=40, junk=True)
    port = await proxy.start()
    daemon = start_daemon(CALLCONNECT_ASTERISK_PORT=str(port))
    try:
        await daemon.ready()
        async with api(daemon) as client:
            call_id = (await client.post("/v1/calls", json={
                **BRIDGED_CALL, "whisper": "Connecting you now", "time_limit": 2})
                       ).json()["call_uuid"]
            ended = await wait_for_state(client, call_id, "ended")
            metrics = (await client.get("/metrics")).text
    finally:
        await proxy.close()
    assert ended["status"] == "completed", ended["result"]["reason"]
    assert ended["result"]["whisper"]["played"] is True
    assert proxy.junk_sent >= 20
    assert proxy.connections == 1 and not log_events(daemon, "ami.disconnected")
    assert "callconnect_switch_reconnects_total 0.0" in metrics


@pytest.fixture
def dialplan_without_leg_a(lab: None) -> Iterator[None]:
    run_lab("cli", "dialplan remove extension s@callconnect-leg-a")
    yield
    run_lab("cli", "dialplan reload")


async def test_an_originate_asterisk_refuses_fails_the_call_at_once(
        daemon: DaemonProcess, dialplan_without_leg_a: None) -> None:
    async with api(daemon) as client:
        started = time.monotonic()
        placed = await client.post("/v1/calls", json=BRIDGED_CALL)
        ended = await wait_for_state(client, placed.json()["call_uuid"], "ended", timeout=5)
        took = time.monotonic() - started
    assert ended["status"] == "failed"
    assert "Asterisk refused Originate: Extension does not exist." in ended["result"]["reason"]
    assert "extensions_callconnect.conf" in ended["result"]["reason"], "says how to fix it"
    assert ended["result"]["leg_b"]["status"] == "not-dialed"
    assert took < 5


@pytest.fixture
def small_disk(lab: None, tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB filesystem of the test's own, for the store."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    return filler


async def test_a_full_disk_refuses_new_calls_and_loses_nothing_accepted(
        start_daemon: Callable[..., DaemonProcess], webhook_receiver: StartReceiver,
        small_disk: Path) -> None:
    receiver = await webhook_receiver()
    daemon = start_daemon(CALLCONNECT_STORE_PATH=str(small_disk / "callconnect.sqlite3"))
    await daemon.ready()
    async with api(daemon) as client:
        accepted = (await client.post("/v1/calls", json={
            **BRIDGED_CALL, "time_limit": 4, "webhook_url": receiver.url})).json()["call_uuid"]
        await wait_for_state(client, accepted, "bridged")
        filler = fill(small_disk)
        refused = await client.post("/v1/calls", json={**BRIDGED_CALL, "time_limit": 2})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error_id"] == "store-unavailable"
        assert "disk is full" in refused.json()["message"]
        status = await daemon.ready(want=503, timeout=5)
        assert "disk is full" in status["components"]["store"]["reason"]
        # The accepted call ends while the disk is full: its end waits in memory.
        deadline = time.monotonic() + 15
        while "wait to be written" not in status["components"]["store"]["reason"]:
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.2)
            status = (await client.get("/status")).json()
        assert receiver.bodies == [], "nothing is sent before it is written"
        filler.unlink()
        await daemon.ready(want=200, timeout=10)
        ended = await wait_for_state(client, accepted, "ended", timeout=10)
        timeline = [t["data"]["to"] for t in ended["timeline"] if t["kind"] == "transition"]
        again = await client.post("/v1/calls", json={**BRIDGED_CALL, "time_limit": 1})
        assert again.status_code == 202, again.text
        await wait_for_state(client, again.json()["call_uuid"], "ended")
    assert ended["status"] == "completed" and ended["result"]["hangup_by"] == "time_limit"
    assert timeline[-2:] == ["ending", "ended"], "every transition was kept"
    assert len(await completions(receiver, accepted)) == 1


async def test_an_account_that_passes_no_newexten_still_connects_and_says_what_to_add(
        start_daemon: Callable[..., DaemonProcess]) -> None:
    """An AMI account set up before the Newexten filter: the first Redirect
    waits the action timeout for a wait Asterisk never tells of, the log says
    what to add, and from then on Redirects go at once; both calls connect."""
    proxy = AmiProxy(withheld=("Newexten",))
    port = await proxy.start()
    daemon = start_daemon(CALLCONNECT_ASTERISK_PORT=str(port),
                          CALLCONNECT_ASTERISK_ACTION_TIMEOUT="2")
    calls = []
    try:
        await daemon.ready()
        async with api(daemon) as client:
            for _ in range(2):
                call_id = (await client.post("/v1/calls", json={
                    **BRIDGED_CALL, "whisper": "Connecting you now", "time_limit": 1})
                           ).json()["call_uuid"]
                calls.append(await wait_for_state(client, call_id, "ended", timeout=40))
    finally:
        await proxy.close()
    assert proxy.withheld_count > 0, "Asterisk sent Newexten events the proxy held back"
    assert [call["status"] for call in calls] == ["completed", "completed"], calls
    [missing] = log_events(daemon, "ami.redirect.no_wait_events")
    assert "manager_callconnect.conf" in missing["reason"] and "dialplan" in missing["reason"]
    # From A's answer to B's dial: the whisper's length, plus the first call's
    # Redirect held the action timeout (2 s) before it went.
    whisper_to_dial = [entered(call["result"], "dialing-b") - entered(call["result"], "whispering")
                       for call in calls]
    assert whisper_to_dial[0] - whisper_to_dial[1] == pytest.approx(2.0, abs=0.6), whisper_to_dial
