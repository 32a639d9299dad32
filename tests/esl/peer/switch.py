"""The switch: its state, its connections and the events it raises."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from email.utils import formatdate
from typing import Any

from .api_commands import ApiCommands
from .applications import Applications
from .calls import Calls
from .channel import Channel
from .connection import ChunkReader, PeerConnection
from .wire import CALLING, CORE_UUID, HOSTNAME, VARIABLE_EVENTS, VERSION, now_us

# How long an originated channel stays answered before originate() hands it
# to its application (mod_commands sets CS_EXECUTE once switch_ivr_originate()
# returns). A playback sent to it meanwhile runs in that state and fails with
# PLAYBACK ERROR and no PLAYBACK_START/STOP: 15 of 160 broadcasts sent on
# CHANNEL_ANSWER to FreeSWITCH 1.10.12 in the lab, none of 160 sent on
# CHANNEL_PARK (python -m bench.fs_answer_race). The peer makes the gap wide
# enough to hit every time.
HANDOVER_SECONDS = 0.05


class EslPeer(ApiCommands, Calls, Applications):
    """The switch on 127.0.0.1 (a random port, ``port`` once started): its
    channels, its connections and the events it raises, and the knobs a test
    turns (stalls, refusals, split writes, what happens meanwhile)."""

    def __init__(self, password: str = "ClueCon", *, gateways: Iterable[str] | None = ("lab",),
                 profiles: Iterable[str] = ("internal", "external"),
                 answer_delay: float = 0.5, reject_delay: float = 0.3,
                 hangup_after: float = 4.0) -> None:
        self.password = password
        self.gateways = set(gateways) if gateways is not None else None
        self.profiles = set(profiles)
        self.answer_delay = answer_delay
        self.reject_delay = reject_delay
        self.hangup_after = hangup_after
        self.acl_reject = False
        self.handover_seconds = HANDOVER_SECONDS
        self.split_writes = False
        self.stall: dict[str, float] = {}  # api command -> seconds before it answers
        self.refuse: dict[str, str] = {}  # api command (or "bgapi <cmd>") -> reply
        # api command -> what the switch does, given the command's arguments,
        # after taking its answer and before sending it: the events of that
        # reach the listener first.
        self.meanwhile: dict[str, Callable[[str], Awaitable[None]]] = {}
        # Application name -> what the switch does, given the channel id, before
        # it answers a sendmsg that runs it (the listener is busy meanwhile):
        # a text returned is the reply, the application refused.
        self.on_sendmsg: dict[str, Callable[[str], Awaitable[str | None]]] = {}
        # The directory's users for user/NAME (None: any name is a user);
        # a user named offline-* is not registered.
        self.directory: set[str] | None = None
        # The inbound dialplan's hangup of a call nobody claims (its sched_hangup +10).
        self.unclaimed_after = 10
        self.hashes: dict[str, str] = {}  # mod_hash's entries, "<realm>_<key>"
        self.domain = "127.0.0.1"  # vanilla vars.xml: $${domain} = $${local_ip_v4}
        # The scheduler's tasks by group (sched_hangup: the channel id).
        self.scheduled: dict[str, list[asyncio.TimerHandle]] = {}
        self.hangups: list[tuple[str, str]] = []  # (channel, cause) of every hangup
        self.dial_strings: list[str] = []  # every originate's and bridge's, as given
        # (what, channel) for hold limits and music: "schedule", "unschedule",
        # "music on", "music off".
        self.log: list[tuple[str, str]] = []
        self.connections: list[PeerConnection] = []
        self.channels: dict[str, Channel] = {}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._sequence = itertools.count(1000)
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ control

    async def start(self) -> None:
        def protocol() -> asyncio.StreamReaderProtocol:  # asyncio.start_server's, our reader
            return asyncio.StreamReaderProtocol(ChunkReader(), self._accept)

        self._server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self.connections:
            conn.abort()
        for task in list(self._tasks):
            task.cancel()
        for channel in self.channels.values():
            for task in channel.tasks:
                task.cancel()
        for tasks in self.scheduled.values():
            for handle in tasks:
                handle.cancel()
        self.scheduled.clear()
        await asyncio.sleep(0)

    def spawn(self, coroutine: Any, channel: Channel | None = None) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coroutine)
        holder = channel.tasks if channel is not None else self._tasks
        holder.add(task)
        task.add_done_callback(holder.discard)
        return task

    def live_connections(self) -> list[PeerConnection]:
        return [c for c in self.connections if c.authed and not c._closed]

    def drop_connections(self) -> None:
        """The network between controller and switch fails: no goodbye."""
        for conn in self.connections:
            conn.abort()

    def inject(self, data: bytes) -> None:
        """Raw bytes into every logged-in connection, in order with the events."""
        for conn in self.live_connections():
            conn.send_raw(data)

    def channel_ids(self) -> list[str]:
        return sorted(self.channels)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = PeerConnection(self, reader, writer)
        self.connections.append(conn)
        await conn.run()

    # ------------------------------------------------------------ events

    def emit(self, name: str, channel: Channel | None = None, *,
             before: Iterable[tuple[str, str]] = (), after: Iterable[tuple[str, str]] = (),
             body: str | None = None) -> None:
        stamp = now_us()
        seconds = stamp / 1_000_000
        file, function, line = CALLING.get(name, ("switch_event.c", "switch_event_fire", 1))
        headers = [
            ("Event-Name", name), ("Core-UUID", CORE_UUID), ("FreeSWITCH-Hostname", HOSTNAME),
            ("FreeSWITCH-Switchname", HOSTNAME), ("FreeSWITCH-IPv4", "127.0.0.1"),
            ("FreeSWITCH-IPv6", "::1"),
            ("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))),
            ("Event-Date-GMT", formatdate(seconds, usegmt=True)),
            ("Event-Date-Timestamp", str(stamp)), ("Event-Calling-File", file),
            ("Event-Calling-Function", function), ("Event-Calling-Line-Number", str(line)),
            ("Event-Sequence", str(next(self._sequence))),
        ]
        headers += before
        if channel is not None:
            headers += channel.basic_data()
            if name in VARIABLE_EVENTS:
                headers += [(f"variable_{k}", v) for k, v in channel.variables.items()]
        headers += after
        for conn in list(self.connections):
            conn.offer(name, headers, body)

    def heartbeat(self) -> None:
        self.emit("HEARTBEAT", after=[
            ("Event-Info", "System Ready"), ("FreeSWITCH-Version", VERSION),
            ("Up-Time", "0 years, 0 days, 0 hours, 1 minute, 0 seconds, 0 milliseconds, "
                        "0 microseconds"),
            ("Session-Count", str(len(self.channels))), ("Max-Sessions", "1000")])

    def _execute_event(self, name: str, ch: Channel, app: str, data: str,
                       response: str | None = None) -> None:
        after = [("Application", app), ("Application-Data", data),
                 ("Application-UUID", str(uuid.uuid4()))]
        if response is not None:
            after.insert(2, ("Application-Response", response))
        self.emit(name, ch, after=after)

