"""The gevent side of the backend, and the only module that imports gevent or
greenswitch.

greenswitch is a gevent library and the rest of the controller is asyncio, so
one dedicated thread ("callconnect-esl") runs a gevent hub and the greenswitch
InboundESL connection, and nothing is ever monkey-patched. :class:`EslLink`
hands work to that thread through a started ``async_`` watcher and gets
results and events back through ``loop.call_soon_threadsafe``. Every command
waits at most the timeout it is given; connecting waits at most
``connect_timeout``.

greenswitch 0.0.19's InboundESL is kept for its connect/login sequence, and its
reader and writer are replaced, because as shipped:

* its parser URL-decodes an event's whole text before splitting it into lines,
  glues an event's body (BACKGROUND_JOB's result) onto its Content-Length
  header, and raises on a frame without Content-Type or whose first line has no
  ``": "``; the exception ends its reader greenlet while ``connected`` stays
  True, so every later command waits forever;
* ``send()`` uses ``socket.send`` (a partial write is lost) and waits for the
  reply without a timeout;
* when an inbound connection drops, commands waiting for a reply are never
  failed, and ``connect()`` waits for ``auth/request`` without a timeout.

Here frames are cut by :class:`~.wire.EslFramer` (malformed frames are logged
and skipped), replies are matched in order (mod_event_socket answers one
command at a time), and a lost connection fails every waiting command at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import gevent
import gevent.event
import gevent.lock
import structlog
from greenswitch.esl import InboundESL, NotConnectedError

from controller.errors import SwitchActionFailed, SwitchError, SwitchUnavailable

from .actions import EslCommand
from .wire import EslFramer, Frame, Reply

log = structlog.get_logger(__name__)

T = TypeVar("T")

THREAD_NAME = "callconnect-esl"


# ---------------------------------------------------------------- gevent side

class _NoAnswer(Exception):
    """FreeSWITCH did not answer a command in time (raised in the gevent
    thread): the first unanswered of the commands sent together, its
    ``index`` among them and its first two words (an ``auth`` only its first)."""

    def __init__(self, index: int, data: str) -> None:
        words = data.split("\n", 1)[0].split(" ")
        super().__init__(" ".join(words[:1] if words[0] == "auth" else words[:2]))
        self.index = index


class _ConnectError(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class Connection(InboundESL):  # type: ignore[misc]  # greenswitch has no type hints
    """One Event Socket connection. Lives in the gevent thread only."""

    # Set by greenswitch's ESLProtocol/InboundESL.
    _commands_sent: list[Any]
    _auth_request_event: Any
    _receive_events_greenlet: Any
    _run: bool
    connected: bool
    sock: Any

    def __init__(self, host: str, port: int, password: str, timeout: float,
                 on_frame: Callable[[Frame], None], on_lost: Callable[[str], None]) -> None:
        super().__init__(host, port, password, timeout=timeout)
        self.reply_timeout = timeout
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._send_lock = gevent.lock.Semaphore()
        self.rejection: str | None = None
        self.lost_reason: str | None = None

    @property
    def tcp_connected(self) -> bool:
        return getattr(self, "sock_file", None) is not None

    def start_event_handlers(self) -> None:
        # Only a reader: events go straight to the asyncio thread, so
        # greenswitch's dispatcher greenlet has nothing to do.
        self._receive_events_greenlet = gevent.spawn(self.receive_events)

    def receive_events(self) -> None:
        framer = EslFramer()
        reason = "FreeSWITCH closed the connection"
        try:
            while self._run:
                data = self.sock.recv(65536)
                if not data:
                    break
                for frame in framer.feed(data):
                    self._dispatch(frame)
        except Exception as exc:  # socket errors, or our own close() in shutdown
            reason = f"connection error: {exc}"
        finally:
            self._lost(reason)

    def _dispatch(self, frame: Frame) -> None:
        kind = frame.content_type
        if kind == "auth/request":
            self._auth_request_event.set()
        elif kind in ("command/reply", "api/response"):
            if not self._commands_sent:
                log.warning("esl.reply.unexpected", content_type=kind, reply=frame.body[:80])
                return
            self._commands_sent.pop(0).set(Reply(dict(frame.headers), frame.body))
        elif kind.startswith("text/event-"):
            self._on_frame(frame)
        elif kind == "text/disconnect-notice":
            log.info("esl.disconnect_notice", text=frame.body.strip()[:200])
        elif kind == "text/rude-rejection":
            self.rejection = frame.body.strip() or "access denied"
            self.connected = False
            self._auth_request_event.set()
        elif kind != "log/data":
            log.warning("esl.frame.unknown", content_type=kind)

    def _lost(self, reason: str) -> None:
        if self.lost_reason is not None:
            return
        self.lost_reason = reason
        self._run = False
        self.connected = False
        waiting, self._commands_sent = self._commands_sent, []
        for result in waiting:
            result.set_exception(NotConnectedError(reason))
        self._auth_request_event.set()
        self._on_lost(reason)

    def send(self, data: str, timeout: float | None = None) -> Reply:
        """Send one command and wait for its reply (greenswitch's authenticate()
        calls this too)."""
        return self.send_together([data], timeout)[0]

    def send_together(self, frames: Sequence[str], timeout: float | None = None) -> list[Reply]:
        """Send ``frames`` in one write and wait at most ``timeout`` for all
        their replies, in order. One write: a controller killed right after it
        cannot leave the switch with only the first of them."""
        if not self.connected:
            raise NotConnectedError(self.lost_reason or "not connected")
        results = [gevent.event.AsyncResult() for _ in frames]
        with self._send_lock:  # keep the reply queue in the order of the bytes sent
            self._commands_sent.extend(results)
            self.sock.sendall("".join(data + "\n\n" for data in frames).encode())
        deadline = gevent.get_hub().loop.now() + (self.reply_timeout if timeout is None
                                                  else timeout)
        replies: list[Reply] = []
        for index, result in enumerate(results):
            result.wait(max(0.0, deadline - gevent.get_hub().loop.now()))
            if not result.ready():
                # The entries stay queued: FreeSWITCH answers in order, so a
                # late reply still lands on its own and not on the next command.
                raise _NoAnswer(index, frames[index])
            replies.append(result.get(block=False))
        return replies

    def expect_ok(self, data: str) -> None:
        reply = self.send(data)
        if not reply.ok:
            raise _ConnectError("refused", f"{data.split(chr(10), 1)[0]!r}: {reply.text}")

    def shutdown(self, timeout: float) -> None:
        """Say goodbye if we can, then close; never waits more than ``timeout``."""
        if self.connected:
            with contextlib.suppress(Exception):
                self.send("exit", timeout=timeout)
        self.abort(timeout)

    def abort(self, timeout: float = 1.0) -> None:
        self._run = False
        self.connected = False
        sock = getattr(self, "sock", None)
        sock_file = getattr(self, "sock_file", None)
        if sock is not None:
            # shutdown() wakes the reader at once; close() alone would not while
            # greenswitch's makefile() still holds the socket open.
            with contextlib.suppress(Exception):
                sock.shutdown(socket.SHUT_RDWR)
        for closable in (sock_file, sock):
            if closable is not None:
                with contextlib.suppress(Exception):
                    closable.close()
        reader = self._receive_events_greenlet
        if reader is not None and reader is not gevent.getcurrent():
            reader.join(timeout)
            if not reader.dead:
                reader.kill(block=False)


class _GeventThread:
    """A thread that runs a gevent hub and the greenlets we give it.

    Jobs cross over through a deque and a started ``async_`` watcher, whose
    ``send()`` may be called from any thread; the watcher also keeps the hub's
    loop alive while the thread waits for work.
    """

    def __init__(self) -> None:
        self._thread = threading.Thread(target=self._main, name=THREAD_NAME, daemon=True)
        self._ready = threading.Event()
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._wake: Any = None
        self._stop: Any = None

    def start(self, timeout: float) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise SwitchUnavailable("the Event Socket thread did not start")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _main(self) -> None:
        hub = gevent.get_hub()
        self._stop = gevent.event.Event()
        self._wake = hub.loop.async_()
        self._wake.start(self._drain)
        self._ready.set()
        try:
            self._stop.wait()
        finally:
            self._wake.stop()
            self._wake.close()
            with contextlib.suppress(Exception):
                hub.destroy(destroy_loop=True)

    def _drain(self) -> None:
        while self._jobs:
            gevent.spawn(self._jobs.popleft())

    def submit(self, job: Callable[[], None]) -> None:
        if not self.alive or self._wake is None:
            raise SwitchUnavailable("the Event Socket thread is not running")
        self._jobs.append(job)
        self._wake.send()

    def stop(self, timeout: float) -> None:
        if self.alive and self._wake is not None:
            self._jobs.append(self._stop.set)
            self._wake.send()
        self._thread.join(timeout)


# ---------------------------------------------------------------- asyncio side

class EslLink:
    """The Event Socket thread seen from asyncio: starts and stops it, opens
    connections in it and runs their commands, each within a timeout."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._thread: _GeventThread | None = None
        self._pending: dict[asyncio.Future[Any], str] = {}

    def start(self) -> None:
        if self._thread is None or not self._thread.alive:
            thread = _GeventThread()
            thread.start(5.0)
            self._thread = thread

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.stop, 5.0)

    async def open(self, host: str, port: int, password: str, timeout: float, setup: Sequence[str],
                   on_frame: Callable[[Frame], None], on_lost: Callable[[str], None]) -> Connection:
        """Connect, log in and send ``setup``, within ``timeout``. ``on_frame``
        and ``on_lost`` are called in the asyncio thread."""
        loop = asyncio.get_running_loop()

        def post(handler: Callable[[T], None]) -> Callable[[T], None]:
            def posted(value: T) -> None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                    loop.call_soon_threadsafe(handler, value)
            return posted

        def job() -> Connection:
            conn = Connection(host, port, password, timeout, post(on_frame), post(on_lost))
            timer = gevent.Timeout(timeout)
            timer.start()
            try:
                conn.connect()
                for text in setup:
                    conn.expect_ok(text)
                return conn
            except gevent.Timeout as exc:
                conn.abort()
                if exc is not timer:
                    raise
                kind = "silent" if conn.tcp_connected else "unreachable"
                raise _ConnectError(kind, f"no answer within {timeout:g} s") from None
            except ValueError as exc:  # greenswitch authenticate(): 'Invalid password.'
                conn.abort()
                raise _ConnectError("password", str(exc)) from None
            except NotConnectedError as exc:
                conn.abort()
                if conn.rejection:
                    raise _ConnectError("acl", conn.rejection) from None
                kind = "closed" if conn.tcp_connected else "unreachable"
                raise _ConnectError(kind, str(exc)) from None
            except (_NoAnswer, _ConnectError):
                conn.abort()
                raise
            except OSError as exc:
                conn.abort()
                raise _ConnectError("unreachable", exc.strerror or str(exc)) from None
            finally:
                timer.close()

        try:
            return await self._run(job, timeout + 1.0, "connect")
        except _ConnectError as exc:
            raise SwitchUnavailable(self._connect_message(exc), address=self._address,
                                    reason=exc.kind) from None
        except _NoAnswer as exc:
            raise SwitchUnavailable(f"FreeSWITCH at {self._address} did not answer {exc} within "
                                    f"{timeout:g} s", address=self._address) from None
        except SwitchActionFailed as exc:
            raise SwitchUnavailable(f"cannot connect to FreeSWITCH at {self._address}: "
                                    f"{exc.message}", address=self._address) from None

    def _connect_message(self, exc: _ConnectError) -> str:
        address = self._address
        if exc.kind == "password":
            return (f"the FreeSWITCH event socket at {address} refused the password; check "
                    "[freeswitch] password (or CALLCONNECT_FREESWITCH_PASSWORD) against "
                    "event_socket.conf.xml")
        if exc.kind == "acl":
            return (f"FreeSWITCH at {address} refused this host ({exc.detail}); allow it in "
                    "event_socket.conf.xml apply-inbound-acl")
        if exc.kind == "silent":
            return (f"connected to {address}, but no Event Socket greeting (auth/request) came "
                    f"({exc.detail}); is that port FreeSWITCH's event socket?")
        if exc.kind == "closed":
            return f"FreeSWITCH at {address} closed the connection before login ({exc.detail})"
        if exc.kind == "refused":
            return f"FreeSWITCH at {address} refused a setup command: {exc.detail}"
        return (f"cannot reach the FreeSWITCH event socket at {address} ({exc.detail}); is "
                "FreeSWITCH running, and mod_event_socket listening on that address "
                "(event_socket.conf.xml listen-ip and listen-port)?")

    async def send(self, conn: Connection, esl: EslCommand, timeout: float) -> Reply:
        return (await self.send_together(conn, [esl], timeout))[0]

    async def send_together(self, conn: Connection, commands: Sequence[EslCommand],
                            timeout: float) -> list[Reply]:
        """``commands`` in one write, their replies in order, all within
        ``timeout``; SwitchActionFailed names the first one unanswered."""
        what = ", ".join(esl.name for esl in commands)
        frames = [esl.wire for esl in commands]
        try:
            # The gevent side gives up first, so the error names the command
            # it waited for; this side's extra half second covers the hop back.
            return await self._run(lambda: conn.send_together(frames, timeout), timeout + 0.5,
                                   what)
        except SwitchError:
            raise
        except _NoAnswer as exc:
            name = commands[exc.index].name
            raise SwitchActionFailed(f"FreeSWITCH did not answer {name} within "
                                     f"{timeout:g} s", action=name) from exc
        except (NotConnectedError, OSError) as exc:
            raise SwitchActionFailed(f"lost the connection to FreeSWITCH at {self._address} "
                                     f"while waiting for {what} ({exc})",
                                     action=commands[0].name) from exc

    async def shutdown(self, conn: Connection, timeout: float) -> None:
        """Say goodbye and close, if the thread still runs; never raises."""
        if self._thread is None:
            return
        with contextlib.suppress(SwitchError, OSError):
            await self._run(lambda: conn.shutdown(timeout), timeout + 1.0, "exit")

    async def abort(self, conn: Connection) -> None:
        await self._run(conn.abort, 2.0, "abort")

    def fail_pending(self, error: SwitchError) -> None:
        for future, what in list(self._pending.items()):
            if not future.done():
                future.set_exception(type(error)(f"{error.message} (while waiting for {what})",
                                                 **error.details))

    async def _run(self, fn: Callable[[], T], timeout: float, what: str) -> T:
        """Run ``fn`` in a greenlet of the Event Socket thread; wait at most ``timeout``."""
        thread = self._thread
        if thread is None:
            raise SwitchUnavailable(f"not connected to FreeSWITCH at {self._address}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                value = fn()
            except BaseException as exc:  # gevent.Timeout and GreenletExit too
                error = exc if isinstance(exc, Exception) else NotConnectedError(repr(exc))
                _post_outcome(loop, future, None, error)
                if not isinstance(exc, Exception):
                    raise
            else:
                _post_outcome(loop, future, value, None)

        self._pending[future] = what
        try:
            thread.submit(job)
            done, _ = await asyncio.wait({future}, timeout=timeout)
            if not done:
                future.cancel()
                raise SwitchActionFailed(f"FreeSWITCH did not answer {what} within {timeout:g} s",
                                         action=what)
            return future.result()
        finally:
            self._pending.pop(future, None)


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return  # timed out or failed by a lost connection already
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _post_outcome(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: Any,
                  error: BaseException | None) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(_settle, future, value, error)
