"""The daemon's HTTP side against slow, idle, unauthenticated and oversized
clients, on the real daemon process (its switch unreachable, so no lab):

* 1,000 idle sockets do not keep /status or POST /v1/calls from answering,
  also under a low open-file limit;
* a burst of 500 new connections while the daemon accepts none waits for it,
  none dropped;
* a half-sent head or body is closed within its timeout, however slowly the
  client trickles bytes;
* a head over 16 KiB or 100 header fields gets 431 and the connection
  closes, also when it comes in pieces; one within both bounds is answered;
* the token is checked before the body is read, and a body over
  api.max_body_bytes gets 413 body-too-large;
* /status does not write the store on every GET;
* /docs is off by default; on, it is served without any CDN, and /docs,
  /openapi.json and /metrics can require the token."""

from __future__ import annotations

import os
import re
import resource
import select
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controller.daemon.http_server import MAX_HEAD_BYTES, MAX_HEADER_FIELDS
from tests.api.switch_down import switch_down_env
from tests.lab.conftest import LAB_CONFIG, REPO, TOKEN, DaemonProcess

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_BODY = 8192
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CALL = {"leg_a": "+27115550101", "leg_b": "+27115550202"}


class Daemon(DaemonProcess):
    """The real daemon, optionally under an open-file limit it cannot raise."""

    def __init__(self, tmp: Path, open_files: int | None, env: dict[str, str]) -> None:
        super().__init__(tmp / "store.sqlite3", tmp / "daemon.log", switch_down_env(tmp, **env))
        self.store = tmp / "store.sqlite3"
        self.open_files = open_files

    def start(self) -> None:
        limit = self.open_files

        def limit_files() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "controller", "--config", str(LAB_CONFIG),
                 "--log-level", "info", "--json-logs", "daemon"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                preexec_fn=limit_files)
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, f"daemon exited: {self.log.read_text()[-2000:]}"
            try:
                if httpx.get(f"{self.url}/status", timeout=2).status_code == 503:
                    return  # serving, with the switch down as intended
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, self.log.read_text()[-2000:]
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]

    def open_files_now(self) -> int:
        return len(list(Path(f"/proc/{self.pid}/fd").iterdir()))


def started(tmp: Path, open_files: int | None = None, **env: str) -> Daemon:
    daemon = Daemon(tmp, open_files, env)
    try:
        daemon.start()
    except BaseException:
        daemon.stop()
        raise
    return daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = started(tmp_path_factory.mktemp("http-limits"),
                      CALLCONNECT_API_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
                      CALLCONNECT_API_BODY_TIMEOUT=str(BODY_TIMEOUT),
                      CALLCONNECT_API_MAX_BODY_BYTES=str(MAX_BODY))
    yield running
    running.stop()


def raise_own_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        assert hard == resource.RLIM_INFINITY or hard >= wanted, \
            f"this test needs {wanted} open files; the hard limit is {hard}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def seconds_until_closed(sock: socket.socket, trickle: bytes, limit: float) -> float:
    """Send one byte of ``trickle`` every 0.2 s until the daemon closes the
    connection; the seconds that took. Fails if it is still open after ``limit``."""
    started_at = time.monotonic()
    for byte in trickle * 1000:
        readable, _, _ = select.select([sock], [], [], 0.2)
        try:
            if readable and sock.recv(65536) == b"":
                return time.monotonic() - started_at
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started_at
        assert time.monotonic() - started_at < limit, f"still open after {limit} s"
    raise AssertionError("ran out of bytes to trickle")


# ------------------------------------------------------------------ idle sockets


@pytest.mark.parametrize("open_files", [None, 512], ids=["raised-limit", "512-open-files"])
def test_status_and_calls_answer_with_1000_idle_sockets_open(
        tmp_path: Path, open_files: int | None) -> None:
    raise_own_file_limit(1200)
    # Long timeouts: here only the cap on connections may close an idle socket.
    daemon = started(tmp_path, open_files, CALLCONNECT_API_HEADER_TIMEOUT="300")
    idle: list[socket.socket] = []
    try:
        for _ in range(1000):
            idle.append(socket.create_connection(("127.0.0.1", daemon.port), timeout=10))
        status = httpx.get(f"{daemon.url}/status", timeout=10)
        assert status.status_code == 503, status.text
        assert status.json()["components"]["switch"]["status"] == "fail"
        placed = httpx.post(f"{daemon.url}/v1/calls", json=CALL, headers=AUTH, timeout=10)
        assert placed.status_code == 503, placed.text
        assert placed.json()["error_id"] == "switch-unavailable"
        held = daemon.open_files_now()
        if open_files is None:
            assert held >= 1000, "every idle socket is held while there is room"
        else:
            assert held < open_files, "the oldest idle sockets were closed to make room"
    finally:
        for sock in idle:
            sock.close()
        daemon.stop()


def test_a_burst_of_new_connections_waits_for_a_busy_daemon_none_dropped(tmp_path: Path) -> None:
    # Past its listen backlog the kernel drops a new connection's SYN, and the
    # client waits for it to be sent again (1 s, then 3 s, then 7 s). Under
    # 4,096 open files the backlog is 1,024.
    burst_size = 500
    raise_own_file_limit(4096)
    daemon = started(tmp_path, 4096)
    burst: list[socket.socket] = []
    try:
        with selectors.DefaultSelector() as waiting:
            os.kill(daemon.pid, signal.SIGSTOP)  # as busy as can be: it accepts nothing
            try:
                for _ in range(burst_size):
                    sock = socket.socket()
                    sock.setblocking(False)
                    burst.append(sock)
                    sock.connect_ex(("127.0.0.1", daemon.port))
                    waiting.register(sock, selectors.EVENT_WRITE)
                connected = 0
                deadline = time.monotonic() + 3  # past the first SYN's resend
                while connected < burst_size and time.monotonic() < deadline:
                    for key, _ in waiting.select(timeout=0.2):
                        waiting.unregister(key.fileobj)
                        connected += key.fileobj.getsockopt(  # type: ignore[union-attr]
                            socket.SOL_SOCKET, socket.SO_ERROR) == 0
            finally:
                os.kill(daemon.pid, signal.SIGCONT)
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        assert connected == burst_size, (
            f"{connected} of {burst_size} connections got through while the daemon was busy: "
            "the kernel dropped the rest (a listen backlog too small; the kernel caps it at "
            f"net.core.somaxconn, {somaxconn} here)")
        last = burst[-1]
        last.setblocking(True)
        last.settimeout(10)
        last.sendall(b"GET /status HTTP/1.1\r\nHost: test\r\n\r\n")
        assert last.recv(65536).startswith(b"HTTP/1.1 503"), "served once the daemon runs again"
    finally:
        for sock in burst:
            sock.close()
        daemon.stop()


# ------------------------------------------------------------------ slow clients


def test_a_half_sent_head_is_closed_within_the_header_timeout(daemon: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: test\r\n")
        took = seconds_until_closed(sock, b"X-Slow: 1", HEADER_TIMEOUT + 5)
    assert took < HEADER_TIMEOUT + 3


def test_a_half_sent_head_after_a_keep_alive_answer_is_closed_too(daemon: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: test\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 503") and b"connection: close" not in head.lower(), head
        sock.sendall(b"GET /status HTTP/1.1\r\n")  # the next request, sent by halves
        took = seconds_until_closed(sock, b"X-Slow: 1", HEADER_TIMEOUT + 5)
    assert took < HEADER_TIMEOUT + 3


def test_a_half_sent_body_is_closed_within_the_body_timeout(daemon: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/calls HTTP/1.1\r\nHost: test\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"leg_a\"")
        took = seconds_until_closed(sock, b" ", BODY_TIMEOUT + 5)
    assert took < BODY_TIMEOUT + 3


# ------------------------------------------------------------------ oversized heads


def answer_until_closed(sock: socket.socket) -> bytes:
    """Everything the daemon sends until it closes the connection."""
    answer = b""
    while part := sock.recv(65536):
        answer += part
    return answer


def test_a_head_over_the_byte_bound_gets_431_even_in_pieces(daemon: Daemon) -> None:
    start = b"GET /status HTTP/1.1\r\nHost: test\r\n"
    field = b"X-Padding: " + b"y" * 1000 + b"\r\n"
    within = (MAX_HEAD_BYTES - len(start)) // len(field)
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(start)
        for _ in range(within):  # in pieces, so that the bound holds across reads
            time.sleep(0.01)
            sock.sendall(field)
        time.sleep(0.01)
        sock.sendall(b"X-Last: " + b"z" * 2000 + b"\r\n")  # over the bound, not yet whole
        answer = answer_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer
    assert f"at most {MAX_HEAD_BYTES} bytes and {MAX_HEADER_FIELDS} header fields".encode() \
        in answer, answer


def head_of(fields: int, padding: int = 0) -> bytes:
    """A GET /status with this many header fields in all, one of them
    ``padding`` bytes long."""
    return (b"GET /status HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
            + b"X-Padding: " + b"y" * padding + b"\r\n"
            + b"".join(b"X-Field-%d: v\r\n" % n for n in range(fields - 3)) + b"\r\n")


def test_a_head_over_the_field_bound_gets_431(daemon: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(head_of(MAX_HEADER_FIELDS + 1))
        answer = answer_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer


def test_a_head_within_both_bounds_is_answered(daemon: Daemon) -> None:
    head = head_of(MAX_HEADER_FIELDS, padding=MAX_HEAD_BYTES - len(head_of(MAX_HEADER_FIELDS)))
    assert len(head) == MAX_HEAD_BYTES
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(head)
        answer = answer_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 503 "), answer  # /status, with the switch down


# ------------------------------------------------------------------ token first, body limit


def test_an_unauthenticated_100_mb_post_gets_401_at_once_and_costs_no_memory(daemon: Daemon) -> None:
    size = 100 * 2**20
    httpx.post(f"{daemon.url}/v1/calls", content=b"{}", timeout=10)  # warm up the code path
    before = daemon.rss_kib()
    started_at = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/calls HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(size).encode() + b"\r\n\r\n")
        chunk = b"x" * 2**20
        for _ in range(size // len(chunk)):  # as an attacker would: send it all, unasked
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        while b"\r\n\r\n" not in answer:
            part = sock.recv(65536)
            assert part, f"closed without an answer: {answer!r}"
            answer += part
    took = time.monotonic() - started_at
    grown = daemon.rss_kib() - before
    assert grown < 5 * 1024, f"the daemon's RSS grew by {grown} KiB"
    assert answer.startswith(b"HTTP/1.1 401"), answer
    assert took < 5, f"the 401 took {took:.1f} s"


def test_a_json_syntax_error_without_a_token_gets_401(daemon: Daemon) -> None:
    broken = b'{"leg_a": "+27115550101", '
    headers = {"Content-Type": "application/json"}
    anonymous = httpx.post(f"{daemon.url}/v1/calls", content=broken, headers=headers, timeout=10)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["error_id"] == "unauthorized"
    with_token = httpx.post(f"{daemon.url}/v1/calls", content=broken,
                            headers={**headers, **AUTH}, timeout=10)
    assert with_token.status_code == 400, with_token.text


def test_a_body_over_max_body_bytes_gets_413(daemon: Daemon) -> None:
    url = f"{daemon.url}/v1/calls"
    announced = httpx.post(url, content=b" " * (MAX_BODY + 1), headers=AUTH, timeout=10)
    assert announced.status_code == 413, announced.text
    assert announced.json()["error_id"] == "body-too-large"
    assert announced.json()["details"]["max_bytes"] == MAX_BODY

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked, and growing past the limit
        yield b'{"leg_a": "+27115550101", "leg_b": "+27115550202", "metadata": {"x": "'
        for _ in range(3):
            yield b"y" * (MAX_BODY // 2)

    chunked = httpx.post(url, content=chunks(), headers=AUTH, timeout=10)
    assert chunked.status_code == 413, chunked.text
    assert chunked.json()["error_id"] == "body-too-large"
    within = httpx.post(url, json={**CALL, "metadata": {"x": "y" * (MAX_BODY // 2)}}, headers=AUTH,
                        timeout=10)
    assert within.status_code == 503 and within.json()["error_id"] == "switch-unavailable", \
        within.text


# ------------------------------------------------------------------ /status, /metrics, /docs


def test_status_does_not_write_the_store_on_every_get(daemon: Daemon) -> None:
    httpx.get(f"{daemon.url}/status", timeout=10)  # may write: the check was not cached yet
    with sqlite3.connect(daemon.store) as db:
        first = db.execute("PRAGMA data_version").fetchone()[0]
        for _ in range(10):
            assert httpx.get(f"{daemon.url}/status", timeout=10).json()["components"]["store"] == \
                {"status": "ok", "reason": None}
        assert db.execute("PRAGMA data_version").fetchone()[0] == first, \
            "another connection committed: /status wrote the store"


def test_docs_are_off_by_default_and_metrics_and_the_document_open(daemon: Daemon) -> None:
    for path in ("/docs", "/redoc"):
        response = httpx.get(f"{daemon.url}{path}", headers=AUTH, timeout=10)
        assert response.status_code == 404, response.text
    assert httpx.get(f"{daemon.url}/openapi.json", timeout=10).status_code == 200
    assert httpx.get(f"{daemon.url}/metrics", timeout=10).status_code == 200


def test_docs_when_on_are_served_without_a_cdn_and_can_need_the_token(tmp_path: Path) -> None:
    daemon = started(tmp_path, CALLCONNECT_API_DOCS="true", CALLCONNECT_API_DOCS_AUTH="true",
                     CALLCONNECT_API_METRICS_AUTH="true")
    try:
        for path in ("/docs", "/redoc", "/openapi.json", "/metrics"):
            anonymous = httpx.get(f"{daemon.url}{path}", timeout=10)
            assert anonymous.status_code == 401, f"{path}: {anonymous.text}"
            assert anonymous.json()["error_id"] == "unauthorized"
            assert httpx.get(f"{daemon.url}{path}", headers=AUTH, timeout=10).status_code == 200
        for page in ("/docs", "/redoc"):
            html = httpx.get(f"{daemon.url}{page}", headers=AUTH, timeout=10).text
            assets = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert assets, html
            for asset in assets:
                assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
                loaded = httpx.get(f"{daemon.url}{asset}", headers=AUTH, timeout=10)
                assert loaded.status_code == 200 and loaded.content, asset
            assert "://" not in re.sub(r"https?://(www\.)?(w3\.org|swagger\.io)\S*", "", html), \
                f"{page} names another host"
    finally:
        daemon.stop()
