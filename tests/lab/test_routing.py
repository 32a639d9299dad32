"""Routing on the real lab, placed through the daemon's API: simultaneous and
sequential ring, agent groups, dial-whom URLs, fallbacks, confirm key,
on-answer whisper, caller ID allow-list.

Each agent is a SIPp phone of the test's own on its own port, reached as a
sip: URI; its message trace tells when it was rung and when it was cancelled.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from panoramisk import Manager

from controller.config import Config
from tests.conftest import Serve
from tests.lab.conftest import OBSERVER_SECRET, OBSERVER_USERNAME, DaemonProcess, api, wait_for_state
from tests.lab.live_parts import entered

REPO = Path(__file__).resolve().parents[2]
PHONES = REPO / "sip-lab" / "phones"
AGENT = "+27115550101"  # leg A: the lab's answering phone
CUSTOMER = "+27115550202"  # answers
NO_ANSWER = "+27115550301"
WHISPER = "Sales call"


# ---------------------------------------------------------------- phones

@dataclass
class Phone:
    """A SIPp phone for one call; its trace says what it received, when."""

    port: int
    behaviour: str  # a file in sip-lab/phones
    trace: Path
    calls: int = 1
    process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"sip:agent{self.port}@127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["sipp", "-sf", str(PHONES / self.behaviour), "-i", "127.0.0.1",
             "-p", str(self.port), "-mi", "127.0.0.1", "-mp", str(16100 + 10 * (self.port - 5080)),
             "-nostdin", "-m", str(self.calls), "-trace_msg", "-message_file", str(self.trace)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def received(self, method: str) -> list[float]:
        """When each request of this method reached the phone (unix time),
        once its call is over (SIPp writes its trace as it exits)."""
        self.stop()
        if not self.trace.exists():
            return []
        times, stamp, expect_line = [], 0.0, False
        for line in self.trace.read_text(errors="replace").splitlines():
            if line.startswith("-----"):
                # "------ 2026-11-21 14:04:46.361089", in local time
                stamp = datetime.strptime(line.strip("- \t"), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            elif line.startswith("UDP message received"):
                expect_line = True
            elif expect_line and line.strip():
                expect_line = False
                if line.startswith(f"{method} "):
                    times.append(stamp)
        return times

    def stop(self) -> int | None:
        """Wait for the phone's one call to end (kill it after 10 s): its
        exit status, 0 when its scenario ran to the end."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[Callable[..., Phone]]:
    started: list[Phone] = []

    def start(behaviour: str, calls: int = 1) -> Phone:
        phone = Phone(5081 + len(started), behaviour, tmp_path / f"phone{len(started)}.trace",
                      calls)
        phone.start()
        started.append(phone)
        return phone

    yield start
    for phone in started:
        phone.stop()


async def settle() -> None:
    await asyncio.sleep(0.3)  # let the phones bind their ports


async def place(daemon: DaemonProcess, body: dict[str, Any], *,
                want: int = 202) -> dict[str, Any]:
    async with api(daemon) as client:
        response = await client.post("/v1/calls", json=body)
    assert response.status_code == want, response.text
    return dict(response.json())


async def result_of(daemon: DaemonProcess, call_id: str) -> dict[str, Any]:
    async with api(daemon) as client:
        call = await wait_for_state(client, call_id, "ended")
    return dict(call["result"])


async def connect(daemon: DaemonProcess, body: dict[str, Any]) -> dict[str, Any]:
    return await result_of(daemon, (await place(daemon, body))["call_uuid"])


def states(result: dict[str, Any]) -> list[str]:
    return [step["to"] for step in result["timeline"]]


# ---------------------------------------------------------------- ring strategies

@pytest.mark.lab
async def test_simultaneous_ring_first_answer_wins_and_the_others_stop_ringing(
        daemon: DaemonProcess, phones: Callable[..., Phone]) -> None:
    slow, winner, other = phones("no-answer.xml"), phones("answer.xml"), phones("no-answer.xml")
    await settle()
    result = await connect(daemon, {"leg_a": AGENT, "leg_b": [slow.uri, winner.uri, other.uri],
                                    "time_limit": 3, "record": False})
    assert result["status"] == "completed", result["reason"]
    assert result["answered_by"] == winner.uri
    assert len(result["attempts"]) == 1
    assert result["attempts"][0]["targets"] == [slow.uri, winner.uri, other.uri]
    invites = [p.received("INVITE")[0] for p in (slow, winner, other)]
    assert max(invites) - min(invites) < 0.5, "the targets were not rung together"
    answered = result["leg_b_answered_at"]
    for loser in (slow, other):
        cancels = loser.received("CANCEL")
        assert cancels, "a losing phone was left ringing"
        assert cancels[0] - answered < 1.0
        assert loser.stop() == 0  # its scenario ran to the end: INVITE, CANCEL, ACK


@pytest.mark.lab
async def test_sequential_ring_each_target_with_its_own_ring_timeout(
        daemon: DaemonProcess, phones: Callable[..., Phone]) -> None:
    first, second, third = phones("no-answer.xml"), phones("busy.xml"), phones("answer.xml")
    await settle()
    result = await connect(daemon, {
        "leg_a": AGENT, "strategy": "sequential", "time_limit": 2, "record": False,
        "leg_b": [{"to": first.uri, "ring_timeout": 3}, second.uri, third.uri]})
    assert result["status"] == "completed", result["reason"]
    assert [a["outcome"] for a in result["attempts"]] == ["no-answer", "busy", "answered"]
    assert result["answered_by"] == third.uri
    rung = [p.received("INVITE")[0] for p in (first, second, third)]
    assert rung == sorted(rung), "not rung in order"
    assert 2.5 < first.received("CANCEL")[0] - rung[0] < 4.0  # its own 3 s ring timeout


@pytest.mark.lab
async def test_max_attempts_stops_the_route(daemon: DaemonProcess,
                                            phones: Callable[..., Phone]) -> None:
    busy = phones("busy.xml")
    await settle()
    result = await connect(daemon, {"leg_a": AGENT, "strategy": "sequential", "max_attempts": 1,
                                    "leg_b": [busy.uri, CUSTOMER], "record": False})
    assert result["status"] == "busy"
    assert [a["targets"] for a in result["attempts"]] == [[busy.uri]]
    assert "1 attempts made" in result["reason"]


@pytest.mark.lab
async def test_no_answer_falls_back_to_another_target(daemon: DaemonProcess,
                                                      phones: Callable[..., Phone]) -> None:
    silent = phones("no-answer.xml")
    await settle()
    result = await connect(daemon, {
        "leg_a": AGENT, "leg_b": silent.uri, "ring_timeout": 3, "time_limit": 2, "record": False,
        "fallbacks": {"no_answer": {"dial": [CUSTOMER]}}})
    assert result["status"] == "completed", result["reason"]
    assert result["answered_by"] == CUSTOMER
    assert [a["source"] for a in result["attempts"]] == ["request", "fallback:no_answer"]


@pytest.mark.lab
async def test_busy_falls_back_to_a_message_then_hangup(daemon: DaemonProcess,
                                                        phones: Callable[..., Phone]) -> None:
    busy = phones("busy.xml")
    await settle()
    result = await connect(daemon, {
        "leg_a": AGENT, "leg_b": busy.uri, "record": False,
        "fallbacks": {"busy": {"message": "Everyone is busy. Please call back later."}}})
    assert result["status"] == "busy"
    assert states(result)[-4:] == ["routing", "announcing", "ending", "ended"]
    # A heard the message (several seconds of it) before it was hung up.
    assert result["ended_at"] - entered(result, "announcing") > 2.0


@pytest.mark.lab
async def test_an_endpoint_target(daemon: DaemonProcess) -> None:
    result = await connect(daemon, {"leg_a": AGENT, "leg_b": "endpoint:lab-answer-b",
                                    "time_limit": 2, "record": False})
    assert result["status"] == "completed", result["reason"]
    assert result["answered_by"] == "endpoint:lab-answer-b"


@pytest.mark.lab
@pytest.mark.parametrize(("while_ringing", "music"), [("music", True), ("ringback", False)])
async def test_leg_a_hears_music_or_ringback_while_leg_b_rings(
        daemon: DaemonProcess, lab_config: Config, while_ringing: str, music: bool) -> None:
    started: list[str] = []
    manager = Manager(loop=asyncio.get_running_loop(), host=lab_config.asterisk.host,
                      port=lab_config.asterisk.port, username=OBSERVER_USERNAME,
                      secret=OBSERVER_SECRET, ping_delay=10)
    manager.register_event("MusicOnHoldStart", lambda _, m: started.append(m["Channel"]))
    await manager.connect()
    try:
        result = await connect(daemon, {
            "leg_a": AGENT, "leg_b": NO_ANSWER, "ring_timeout": 3, "record": False,
            "while_ringing": while_ringing, "fallbacks": {"no_answer": {"hangup": True}}})
    finally:
        manager.close()
    assert result["status"] == "no-answer"
    on_a = [c for c in started if c.startswith("PJSIP/lab-answer-a-")]
    assert bool(on_a) is music, started


# ---------------------------------------------------------------- confirm key, whisper on answer

@pytest.mark.lab
async def test_on_answer_whisper_then_confirm_key_bridges(
        daemon: DaemonProcess, phones: Callable[..., Phone]) -> None:
    agent = phones("answer-press-1.xml")
    await settle()
    result = await connect(daemon, {
        "leg_a": CUSTOMER, "leg_b": agent.uri, "whisper": WHISPER, "whisper_timing": "on_answer",
        "confirm_key": "1", "time_limit": 2, "record": False})
    assert result["status"] == "completed", result["reason"]
    assert states(result)[:6] == ["dialing-a", "ringing-a", "dialing-b", "ringing-b",
                                  "confirming", "bridged"]
    # The agent heard the whisper and pressed 1 (2.5 s after answering) before the bridge.
    assert entered(result, "bridged") - entered(result, "confirming") > 2.0


@pytest.mark.lab
async def test_a_wrong_key_declines_and_routing_moves_on(
        daemon: DaemonProcess, phones: Callable[..., Phone]) -> None:
    wrong, right = phones("answer-press-5.xml"), phones("answer-press-1.xml")
    await settle()
    result = await connect(daemon, {
        "leg_a": CUSTOMER, "leg_b": [wrong.uri, right.uri], "strategy": "sequential",
        "confirm_key": "1", "confirm_timeout": 5, "time_limit": 2, "record": False})
    assert [a["outcome"] for a in result["attempts"]] == ["declined", "answered"]
    assert "pressed 5" in result["attempts"][0]["declined"]
    assert result["answered_by"] == right.uri
    assert wrong.received("BYE"), "the agent who declined was not hung up"


@pytest.mark.lab
async def test_no_key_in_time_declines(daemon: DaemonProcess,
                                       phones: Callable[..., Phone]) -> None:
    agent = phones("answer.xml")
    await settle()
    result = await connect(daemon, {"leg_a": CUSTOMER, "leg_b": agent.uri, "confirm_key": "1",
                                    "confirm_timeout": 2, "record": False})
    assert result["status"] == "no-answer", result["reason"]
    assert result["attempts"][0]["outcome"] == "declined"
    assert result["attempts"][0]["declined"] == "pressed no key in time"


# ---------------------------------------------------------------- agent groups

async def put_group(daemon: DaemonProcess, name: str, body: dict[str, Any]) -> dict[str, Any]:
    async with api(daemon) as client:
        response = await client.put(f"/v1/groups/{name}", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.lab
async def test_round_robin_group_takes_turns(daemon: DaemonProcess,
                                             phones: Callable[..., Phone]) -> None:
    one, two = phones("answer.xml"), phones("answer.xml")
    await settle()
    await put_group(daemon, "sales", {"strategy": "round-robin", "agents": [one.uri, two.uri]})
    body = {"leg_a": CUSTOMER, "leg_b": "group:sales", "time_limit": 1, "record": False}
    first = await connect(daemon, body)
    second = await connect(daemon, body)
    assert [first["answered_by"], second["answered_by"]] == [one.uri, two.uri]
    assert len(one.received("INVITE")) == len(two.received("INVITE")) == 1


@pytest.mark.lab
async def test_busy_agents_are_skipped_and_all_busy_takes_the_group_path(
        daemon: DaemonProcess, phones: Callable[..., Phone]) -> None:
    one, two = phones("answer.xml"), phones("answer.xml")
    await settle()
    group = await put_group(daemon, "support", {
        "strategy": "longest-idle", "agents": [one.uri, two.uri],
        "fallbacks": {"all_busy": {"message": "All our agents are busy."}}})
    assert group["source"] == "api"
    body = {"leg_a": AGENT, "leg_b": "group:support", "time_limit": 10, "record": False}
    first = (await place(daemon, body))["call_uuid"]
    await asyncio.sleep(4)
    second = (await place(daemon, {**body, "leg_a": CUSTOMER}))["call_uuid"]
    await asyncio.sleep(4)
    # Both agents are on calls now: the third caller hears the all-busy message.
    third = await connect(daemon, {**body, "leg_a": "+27115550102"})
    assert third["status"] == "busy"
    assert third["reason"] == "every agent of group support is busy"
    assert third["attempts"] == []
    assert "announcing" in states(third)
    assert (await result_of(daemon, first))["answered_by"] == one.uri
    assert (await result_of(daemon, second))["answered_by"] == two.uri
    async with api(daemon) as client:
        view = (await client.get("/v1/groups/support")).json()
    assert {a["target"]: a["calls_in_period"] for a in view["agent_states"]} == {
        one.uri: 1, two.uri: 1}
    assert all(a["on_call"] is None for a in view["agent_states"])


@pytest.mark.lab
async def test_calls_at_once_ring_different_agents_and_a_third_takes_all_busy(
        daemon: DaemonProcess, phones: Callable[..., Phone]) -> None:
    """An agent is held from the moment it is offered a call: two calls at
    once ring one agent each, and a third, while both ring, finds all busy."""
    one, two = phones("no-answer.xml"), phones("no-answer.xml")
    await settle()
    await put_group(daemon, "hotline", {"strategy": "sequential", "agents": [one.uri, two.uri]})
    body = {"leg_b": "group:hotline", "ring_timeout": 8, "max_attempts": 1, "record": False}
    first, second = await asyncio.gather(place(daemon, {**body, "leg_a": AGENT}),
                                         place(daemon, {**body, "leg_a": CUSTOMER}))
    async with api(daemon) as client:
        for placed in (first, second):
            await wait_for_state(client, placed["call_uuid"], "dialing-b", "ringing-b")
    third = await connect(daemon, {**body, "leg_a": "+27115550102"})
    assert third["status"] == "busy"
    assert third["reason"] == "every agent of group hotline is busy"
    assert third["attempts"] == []
    rung = [await result_of(daemon, placed["call_uuid"]) for placed in (first, second)]
    assert sorted(r["attempts"][0]["targets"] for r in rung) == sorted([[one.uri], [two.uri]])
    assert [r["status"] for r in rung] == ["no-answer", "no-answer"]
    assert len(one.received("INVITE")) == len(two.received("INVITE")) == 1


@pytest.mark.lab
async def test_a_queued_caller_is_put_through_when_the_agent_comes_free(
        daemon: DaemonProcess, phones: Callable[..., Phone]) -> None:
    agent = phones("answer.xml", calls=2)
    await settle()
    await put_group(daemon, "desk", {"strategy": "sequential", "agents": [agent.uri]})
    first = (await place(daemon, {"leg_a": AGENT, "leg_b": agent.uri, "time_limit": 8,
                                  "record": False}))["call_uuid"]
    await asyncio.sleep(3)
    waiting = await connect(daemon, {
        "leg_a": CUSTOMER, "leg_b": "group:desk", "time_limit": 2, "record": False,
        "fallbacks": {"all_busy": {"queue": {"group": "desk", "max_wait": 30,
                                             "announce_every": 10}}}})
    busy_call = await result_of(daemon, first)
    assert waiting["status"] == "completed", waiting["reason"]
    assert waiting["answered_by"] == agent.uri
    # Put through only once the agent's first call had ended.
    assert waiting["leg_b_answered_at"] > busy_call["ended_at"]
    assert len(agent.received("INVITE")) == 2


@pytest.mark.lab
async def test_a_queue_wait_past_its_limit_ends_with_the_queue_message(
        daemon: DaemonProcess, phones: Callable[..., Phone]) -> None:
    agent = phones("answer.xml")
    await settle()
    await put_group(daemon, "desk", {"strategy": "sequential", "agents": [agent.uri]})
    first = (await place(daemon, {"leg_a": AGENT, "leg_b": agent.uri, "time_limit": 12,
                                  "record": False}))["call_uuid"]
    await asyncio.sleep(3)
    waited = await connect(daemon, {
        "leg_a": CUSTOMER, "leg_b": "group:desk", "record": False,
        "fallbacks": {"all_busy": {"queue": {"group": "desk", "max_wait": 5,
                                             "message": "Please call again later."}}}})
    assert waited["status"] == "busy"
    assert waited["reason"] == "waited 5 s in the queue for group desk"
    assert waited["attempts"] == []
    assert "announcing" in states(waited)
    assert (await result_of(daemon, first))["status"] == "completed"


@pytest.mark.lab
async def test_least_calls_group_rings_the_agent_with_fewest_calls(
        daemon: DaemonProcess, phones: Callable[..., Phone]) -> None:
    busy_one, two = phones("answer.xml"), phones("answer.xml")
    await settle()
    # busy_one takes a call first, outside the group; then the least-calls
    # group of (busy_one, two) must pick two.
    warmup = await connect(daemon, {"leg_a": AGENT, "leg_b": busy_one.uri, "time_limit": 1,
                                    "record": False})
    assert warmup["answered_by"] == busy_one.uri
    await put_group(daemon, "billing", {"strategy": "least-calls",
                                        "agents": [busy_one.uri, two.uri]})
    result = await connect(daemon, {"leg_a": AGENT, "leg_b": "group:billing", "time_limit": 1,
                                    "record": False})
    assert result["answered_by"] == two.uri


@pytest.mark.lab
async def test_group_api_validates_and_protects_config_groups(daemon: DaemonProcess) -> None:
    async with api(daemon) as client:
        bad = await client.put("/v1/groups/x", json={"strategy": "random", "agents": ["1"]})
        assert bad.status_code == 400 and bad.json()["error_id"] == "invalid-field"
        bad_agent = await client.put("/v1/groups/x", json={"agents": ["0800FLOWERS"]})
        assert bad_agent.status_code == 400
        assert bad_agent.json()["details"]["field"] == "agents[0]"
        unknown = await client.post("/v1/calls", json={"leg_a": AGENT, "leg_b": "group:nope"})
        assert unknown.status_code == 400 and "no agent group" in unknown.json()["message"]
        config_group = await client.put("/v1/groups/lab-desk", json={"agents": [CUSTOMER]})
        assert config_group.status_code == 409
        assert config_group.json()["error_id"] == "group-from-config"
        listed = (await client.get("/v1/groups")).json()["groups"]
        assert [g["name"] for g in listed] == ["lab-desk"]
        assert (await client.delete("/v1/groups/nope")).status_code == 404


# ---------------------------------------------------------------- dial whom

@dataclass
class DialWhomServer:
    """A real HTTP server that answers dial-whom questions as told."""

    answers: list[tuple[int, str, float]]  # status, body, delay before answering
    asked: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.asked.append(dict(request.query))
        status, body, delay = self.answers[min(len(self.asked), len(self.answers)) - 1]
        await asyncio.sleep(delay)
        return web.Response(status=status, text=body, content_type="text/plain")


@pytest.fixture
def dial_whom(serve: Serve) -> Callable[..., Awaitable[DialWhomServer]]:
    async def start(*answers: tuple[int, str, float]) -> DialWhomServer:
        server = DialWhomServer(list(answers))
        app = web.Application()
        app.router.add_get("/whom", server.handle)
        server.url = f"{await serve(app)}/whom"
        return server

    return start


@pytest.mark.lab
async def test_dial_whom_numbers_are_rung_once_each_skipping_garbage(
        daemon: DaemonProcess, dial_whom: Callable[..., Awaitable[DialWhomServer]]) -> None:
    numbers = f"call-me-maybe, {NO_ANSWER} ,{CUSTOMER}\n"
    server = await dial_whom((200, numbers, 0.0), (200, numbers, 0.0))
    result = await connect(daemon, {
        "leg_a": AGENT, "leg_b": server.url, "strategy": "sequential", "ring_timeout": 3,
        "time_limit": 2, "record": False, "metadata": {"custom_field": "order-42"}})
    assert result["status"] == "completed", result["reason"]
    assert [a["targets"] for a in result["attempts"]] == [[NO_ANSWER], [CUSTOMER]]
    assert result["answered_by"] == CUSTOMER
    # Asked at the start, then again after the failed attempt, with its status.
    assert len(server.asked) == 2
    first, again = server.asked
    assert first["CallSid"] == result["call_uuid"] and first["CallFrom"] == AGENT
    assert first["CustomField"] == "order-42" and first["DialCallStatus"] == ""
    assert again["DialCallStatus"] == "no-answer" and again["DialWhomNumber"] == NO_ANSWER


@pytest.mark.lab
async def test_dial_whom_error_or_silence_asks_the_fallback_url(
        daemon: DaemonProcess, dial_whom: Callable[..., Awaitable[DialWhomServer]]) -> None:
    failing = await dial_whom((500, "oops", 0.0))
    hanging = await dial_whom((200, NO_ANSWER, 12.0))
    fallback = await dial_whom((200, CUSTOMER, 0.0))
    for primary in (failing, hanging):
        started = time.time()
        result = await connect(daemon, {
            "leg_a": AGENT, "leg_b": primary.url, "dial_whom_fallback_url": fallback.url,
            "dial_whom_ask_again": False, "time_limit": 1, "record": False})
        assert result["status"] == "completed", result["reason"]
        assert result["answered_by"] == CUSTOMER
        assert result["attempts"][0]["source"] == "dial-whom"
    assert len(fallback.asked) == 2
    # The hanging URL was given up on after 10 s, not waited for.
    assert time.time() - started < 25


@pytest.mark.lab
async def test_dial_whom_empty_answer_takes_the_fallback_path(
        daemon: DaemonProcess, dial_whom: Callable[..., Awaitable[DialWhomServer]]) -> None:
    garbage = await dial_whom((200, "nobody, 12, <html>", 0.0))
    result = await connect(daemon, {
        "leg_a": AGENT, "leg_b": garbage.url, "record": False,
        "fallbacks": {"failed": {"message": "Nobody can take your call right now."}}})
    assert result["status"] == "failed"
    assert "no number left to ring" in result["reason"]
    assert result["attempts"] == []
    assert "announcing" in states(result)


# ---------------------------------------------------------------- caller ID

@pytest.mark.lab
async def test_caller_id_must_be_on_the_allow_list(
        start_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = start_daemon(CALLCONNECT_CALLS_CALLER_IDS="+27110000001,+27110000002")
    await daemon.ready()
    body = {"leg_a": AGENT, "leg_b": CUSTOMER, "time_limit": 1, "record": False}
    refused = await place(daemon, {**body, "caller_id": "+27119999999"}, want=400)
    assert refused["error_id"] == "invalid-field" and refused["details"]["field"] == "caller_id"
    accepted = await place(daemon, {**body, "caller_id": "+27110000002"})
    result = await result_of(daemon, accepted["call_uuid"])
    assert result["status"] == "completed"

