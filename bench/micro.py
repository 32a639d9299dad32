"""CPU per call of each of the controller's components, without a switch
(python -m bench.micro, no lab, no root):

* switch events: the recorded AMI streams through the daemon's AMI reader
  (controller/backends/asterisk/protocol.py, panoramisk's Messages), the
  translator and the call core (also as events/s, next to the reader alone);
* HTTP: POST /v1/calls through the daemon's own server (uvicorn's httptools
  protocol on uvloop, the socket, FastAPI's validation and auth, the answer's
  JSON) down to the daemon's place_call, which answers at once; the client is
  another process;
* routing and compliance: the request checked into a route spec, screened
  (destination policy, do-not-call and cap look-ups in the SQLite store) and
  its first targets chosen;
* store: a simple connected call's life in SQLite (create, each change with
  the bookkeeping it causes, the end with its completion webhook: 8 commits),
  one call at a time, so each change is a transaction of its own, as the
  daemon's changes mostly are (they come one by one from the switch); not in
  the total, CONCURRENT lives at a time, their changes sharing commits;
* webhooks: a call's completion webhook encoded and signed;
* not in the total, a completion webhook POSTed by the outbox's sending
  (post_once through the outbound client: the [outbound] checks, the POST
  on a kept-alive connection, the bounded read of the answer), the receiver
  another process on loopback;
* not in the total, for calls routed by one: a dial-whom URL asked through
  the live calls' outbound client (the [outbound] checks, the GET, the
  bounded read, the answer parsed), the URL another process on loopback;
* not in the total, one log line as a host's daemon writes it (JSON, at
  info: a dozen a call), through the daemon's own log set-up.

CPU is the process's (all threads: the store's commits count). The
components run on the daemon's event loop, uvloop. Figures drift between runs
on a shared machine: compare runs made together."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import structlog
import uvloop
from panoramisk.message import Message

from bench.common import free_port
from controller.api.app import create_app
from controller.api.interface import Operations
from controller.backends.asterisk.events import AmiEventTranslator
from controller.backends.asterisk.protocol import AmiProtocol
from controller.calls.checks import RequestChecks
from controller.calls.decision import Decision, Scheduled
from controller.calls.request import CallRequest
from controller.compliance.guard import Compliance
from controller.config import ApiConfig, ComplianceConfig, Config
from controller.core.commands import ChooseTargets
from controller.core.events import RouteExhausted
from controller.core.machine import CallConnect
from controller.core.outcomes import CallStatus
from controller.core.plan import Attempt, CallPlan
from controller.core.states import CallState
from controller.daemon.http_server import api_server
from controller.logs import setup as setup_logs
from controller.outbound import OutboundConfig
from controller.outbound_client import live_calls_client, outbound_client
from controller.routing.dial_whom import DialWhomClient
from controller.store import StoredCall, TimelineEntry, WebhookDelivery
from controller.store.sqlite import SqliteStore
from controller.tts import WhisperRenderer
from controller.webhooks.envelope import envelope, new_event_id
from controller.webhooks.post import post_once
from controller.webhooks.signing import Signer

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "ami"
ROUNDS = 300
CALLS = 400  # calls per component
CONCURRENT = 40  # calls at a time in the store, as at 40 calls/s with 1 s between transitions
TOKEN = "micro"
LEG_A_NUMBER, LEG_B_NUMBER = "+27115550101", "+27115550202"
REQUEST = {"leg_a": LEG_A_NUMBER, "leg_b": LEG_B_NUMBER,
           "whisper": "Connecting you to a caller from the benchmark",
           "webhook_url": "https://crm.example.com/hooks/calls?token=abc"}
# A simple connected call's changes before its end, each saved on its own
# (the end is saved with its result and completion webhook).
STORED_CHANGES = (CallState.DIALING_A, CallState.RINGING_A, CallState.DIALING_B,
                  CallState.RINGING_B, CallState.BRIDGED, CallState.ENDING)
SIGNING_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes: the bench's own


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


def reader(sink: Sink) -> AmiProtocol:
    """The daemon's AMI protocol, on a connection panoramisk's Manager set up."""
    protocol = AmiProtocol()
    protocol.connection_made(transport=None)
    protocol.factory = sink
    protocol.encoding = "utf8"  # the Manager's
    return protocol


def parse_only(recorded: list[tuple[str, bytes]]) -> tuple[int, float]:
    sink = Sink()
    started = time.perf_counter()
    for _ in range(ROUNDS):
        for _, wire in recorded:
            protocol = reader(sink)
            protocol.data_received(wire)
    return sink.count, time.perf_counter() - started


def full_path(recorded: list[tuple[str, bytes]], rounds: int = ROUNDS) -> tuple[int, float]:
    handled = 0
    started = time.perf_counter()
    for _ in range(rounds):
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
            protocol = reader(sink)
            protocol.data_received(wire)
            handled += sink.count
    return handled, time.perf_counter() - started


def a_finished_call() -> CallConnect:
    """A completed call, run through the core from its recorded events."""
    recorded = dict(streams())
    call_id = next(iter(recorded))
    translator = AmiEventTranslator()
    translator.watch(call_id)
    plan = CallPlan(call_id, "+27115550101", "+27115550202", ring_timeout=30, time_limit=60,
                    whisper_audio="/m/w", recording_file="/r/x.wav",
                    first_attempt=Attempt(("+27115550202",), 30))
    core = CallConnect(plan, created_at=time.time())
    core.start()

    def handle(message: Message) -> None:
        for routed in translator.translate(message, 0.0):
            if not core.finished:
                core.handle(routed.event)
    reader(Sink(handle)).data_received(recorded[call_id])
    return core


class PlacingOperations:
    """The daemon's side of POST /v1/calls, answering at once: what is left
    is the HTTP layer's own work."""

    def __init__(self, answer: StoredCall) -> None:
        self.answer = answer
        self.api_tokens = [TOKEN]

    async def place_call(self, request: CallRequest, idempotency_key: str | None,
                         token: str) -> Decision:
        return Scheduled(self.answer)


# Sends the requests from another process, so only the server's CPU is counted.
CLIENT = """
import http.client, json, sys, time
port, count, token, pause = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
body = json.dumps(json.loads(sys.stdin.read()))
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
for _ in range(count):
    connection.request("POST", "/v1/calls", body, {"Authorization": f"Bearer {token}",
                                                   "Content-Type": "application/json"})
    answer = connection.getresponse()
    answer.read()
    if answer.status != 202:
        sys.exit(f"POST /v1/calls answered {answer.status}")
    if pause:
        time.sleep(pause)
"""


def placed_call(core: CallConnect) -> StoredCall:
    """What PlacingOperations answers: the call just placed."""
    return StoredCall("micro-answer", time.time(), time.time(), str(CallState.DIALING_A), None,
                      REQUEST, core.snapshot())


@asynccontextmanager
async def placing_server(answer: StoredCall) -> AsyncIterator[int]:
    """The daemon's own HTTP server (uvicorn with its httptools protocol, the
    socket, FastAPI) answering POST /v1/calls on loopback, warmed; its port."""
    settings = ApiConfig(host="127.0.0.1", port=free_port(), tokens=[TOKEN])
    server = api_server(create_app(cast(Operations, PlacingOperations(answer)), settings), settings)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        await send_requests(settings.port, 20)
        yield settings.port
    finally:
        server.should_exit = True
        await serving


async def http_per_call(answer: StoredCall) -> float:
    """CPU seconds a POST /v1/calls takes the server, the requests back to back."""
    async with placing_server(answer) as port:
        started = time.process_time()
        await send_requests(port, CALLS)
        return (time.process_time() - started) / CALLS


async def send_requests(port: int, count: int, pause: float = 0.0) -> None:
    """``count`` POSTs from another process, each after the last one's answer
    and ``pause`` seconds."""
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(port), str(count), TOKEN, str(pause),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(client.communicate(json.dumps(REQUEST).encode()),
                                    120 + count * pause)
    if client.returncode != 0:
        raise RuntimeError(f"the HTTP client failed: {err.decode()[-500:]}")


# A dial-whom URL and a webhook receiver in another process, so only the
# asker's CPU is counted; kept alive and answering in one write, as a CRM's
# server would.
RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Whom(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536
    def log_message(self, *args): pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "12")
        self.end_headers()
        self.wfile.write(b"+27115550202")
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Whom).serve_forever()
"""


async def receiver() -> tuple[asyncio.subprocess.Process, int]:
    """The RECEIVER, listening."""
    port = free_port()
    server = await asyncio.create_subprocess_exec(sys.executable, "-c", RECEIVER, str(port))
    try:
        async with asyncio.timeout(30):
            while True:  # until it listens
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    return server, port
                except OSError:
                    await asyncio.sleep(0.05)
    except BaseException:
        server.kill()
        await server.wait()
        raise


async def dial_whom_per_ask() -> float:
    server, port = await receiver()
    client = live_calls_client(OutboundConfig(allow_private=True))
    asker = DialWhomClient("ZA", client, timeout=10.0)
    url = f"http://127.0.0.1:{port}/whom"
    try:
        async def one() -> None:
            await asker.ask(url, None, {"CallSid": "micro"})
        return await cpu_per_call(one)
    finally:
        await client.aclose()
        server.kill()
        await server.wait()


async def webhook_post_per_call(core: CallConnect) -> float:
    server, port = await receiver()
    client = outbound_client(OutboundConfig(allow_private=True), 10.0)
    signer = Signer(SIGNING_SECRET)
    body, headers = signer.request(new_event_id(), envelope("call.completed", core.result(),
                                                            time.time()), time.time())
    url = f"http://127.0.0.1:{port}/hooks/calls?token=abc"
    try:
        async def one() -> None:
            answer = await post_once(client, url, body, headers, 10.0)
            if not answer.delivered:
                raise RuntimeError(f"the webhook receiver refused: {answer.error}")
        return await cpu_per_call(one)
    finally:
        await client.aclose()
        server.kill()
        await server.wait()


async def cpu_per_call(one: Callable[[], Awaitable[None]], calls: int = CALLS) -> float:
    await one()  # warm: imports, caches, the first connection
    started = time.process_time()
    for _ in range(calls):
        await one()
    return (time.process_time() - started) / calls


async def routing_per_call(store: SqliteStore, workdir: Path) -> float:
    config = Config()
    config.outbound.allowed_hosts = ["crm.example.com"]
    config.compliance = ComplianceConfig(max_attempts_per_number_per_day=1000)
    checks = RequestChecks(config, {}, WhisperRenderer(workdir))
    compliance = Compliance(config.compliance, "ZA", store)
    request = CallRequest.model_validate(REQUEST)
    serial = 0

    async def one() -> None:
        nonlocal serial
        serial += 1
        call_id = f"micro-{serial}"
        # Leg A is the same agent each time; leg B a new customer, as in the bench.
        checked = checks.check(request.model_copy(update={"leg_b": f"+2711556{serial:04d}"}))
        windows = compliance.windows_for(request.calling_hours, request.calling_days)
        first = [("leg_a", checked.leg_a), *checked.first_targets()]
        await compliance.check_request(call_id, named=first + checked.fallback_targets(),
                                       rung_first=first, windows=windows)
        compliance.release(call_id)
    return await cpu_per_call(one)


async def store_per_call(store: SqliteStore, core: CallConnect, concurrent: int) -> float:
    request = CallRequest.model_validate(REQUEST).model_dump(mode="json")
    snapshot, result = core.snapshot(), core.result()
    serial = 0

    async def life() -> None:
        """A simple connected call's writes, as the runner makes them: its
        creation, then each change with the bookkeeping it causes, started
        together so that they share a commit (tests/unit/calls/test_store_commits.py
        counts the same call through the daemon's own runner)."""
        nonlocal serial
        serial += 1
        call_id = f"store-{concurrent}-{serial}"
        now = time.time()
        record = StoredCall(call_id, now, now, str(CallState.DIALING_A), None, request, snapshot)
        await store.create_call(record)
        for step, state in enumerate(STORED_CHANGES):
            # The listener snapshots the call at each of its changes.
            record = StoredCall(call_id, now, now, str(state), None, request, core.snapshot())
            writes = [store.save_call(record, [TimelineEntry(call_id, now + step, "transition", {
                "from": "a", "to": str(state), "reason": "micro"})], [])]
            if state is CallState.DIALING_A:  # the daily cap's count of the numbers dialed
                writes.append(store.record_attempts(call_id, [LEG_A_NUMBER], now))
            elif state is CallState.DIALING_B:
                writes.append(store.record_attempts(call_id, [LEG_B_NUMBER], now))
            elif state is CallState.BRIDGED:  # the agent busy
                writes.append(store.agent_call_started(LEG_B_NUMBER, call_id, now))
            await asyncio.gather(*writes)
        ended = StoredCall(call_id, now, now, "ended", "completed", request, core.snapshot(), result)
        await asyncio.gather(
            store.save_call(ended, [TimelineEntry(call_id, now + 9, "transition", {
                "from": "ending", "to": "ended", "reason": "micro"})], [WebhookDelivery(
                    new_event_id(), call_id, REQUEST["webhook_url"], "call.completed",
                    envelope("call.completed", result, now), now, now)]),
            store.agent_call_ended(LEG_B_NUMBER, call_id, now))  # the agent free

    async def wave() -> None:
        await asyncio.gather(*(life() for _ in range(concurrent)))
    return await cpu_per_call(wave, CALLS // concurrent) / concurrent


def webhooks_per_call(core: CallConnect) -> float:
    signer = Signer(SIGNING_SECRET)
    payload = envelope("call.completed", core.result(), time.time())
    started = time.process_time()
    for _ in range(CALLS):
        signer.request(new_event_id(), payload, time.time())
    return (time.process_time() - started) / CALLS


def log_line_seconds(lines: int = 20_000) -> float:
    with open(os.devnull, "w") as sink:
        setup_logs("info", json=True, stream=sink)
        log = structlog.get_logger("controller.calls.runner")
        started = time.process_time()
        for _ in range(lines):
            log.info("call.transition", call_id="3f1c2b9e-5a7d-4c1e-8f2a-6b9d0e4c7a15",
                     to="bridged", reason="leg B answered; bridged")
        seconds = (time.process_time() - started) / lines
    setup_logs("warning")
    return seconds


async def components() -> tuple[dict[str, float], dict[str, float]]:
    """The figures of the components every call uses, and the others'."""
    core = a_finished_call()
    recorded = streams()
    started = time.process_time()
    full_path(recorded)
    events = (time.process_time() - started) / (ROUNDS * len(recorded))
    answer = placed_call(core)
    with tempfile.TemporaryDirectory(prefix="callconnect-micro-") as workdir:
        store = SqliteStore(Path(workdir) / "micro.sqlite3")
        await store.open()
        try:
            figures = {"HTTP (POST /v1/calls)": await http_per_call(answer),
                       "routing and compliance": await routing_per_call(store, Path(workdir)),
                       "store (each change a commit of its own)":
                           await store_per_call(store, core, 1),
                       "switch events (AMI parse + translate + core)": events,
                       "webhooks (encode + sign)": webhooks_per_call(core)}
            others = {f"store, {CONCURRENT} calls' changes sharing commits":
                      await store_per_call(store, core, CONCURRENT)}
        finally:
            await store.close()
    others["completion webhook POSTed"] = await webhook_post_per_call(core)
    others["dial-whom URL asked (calls routed by one)"] = await dial_whom_per_ask()
    others["a log line (JSON, info, as a host's daemon)"] = log_line_seconds()
    return figures, others


def main() -> None:
    setup_logs("warning")
    recorded = streams()
    parsed, parse_seconds = parse_only(recorded)
    handled, full_seconds = full_path(recorded)
    parse_rate, full_rate = parsed / parse_seconds, handled / full_seconds
    print(f"[micro] recorded AMI streams: {len(recorded)} calls, {parsed // ROUNDS} events, "
          f"x{ROUNDS}")
    print(f"[micro] AMI reader only:                {parse_rate:12,.0f} events/s")
    print(f"[micro] parse + translator + call core: {full_rate:12,.0f} events/s "
          f"({full_rate / parse_rate:.2f} of parse-only)")
    figures, others = uvloop.run(components())  # the daemon's loop (controller/cli.py)
    print(f"[micro] CPU per call, by component ({CALLS} calls):")
    for name, seconds in figures.items():
        print(f"[micro]   {name:<46} {seconds * 1000:7.3f} ms")
    print(f"[micro]   {'total':<46} {sum(figures.values()) * 1000:7.3f} ms  (goal: <= 2.5 ms)")
    print("[micro] not in the total:")
    for name, seconds in others.items():
        print(f"[micro]   {name:<46} {seconds * 1000:7.3f} ms")


if __name__ == "__main__":
    main()
