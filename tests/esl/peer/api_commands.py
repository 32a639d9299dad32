"""mod_commands' API commands and sendmsg, as the peer answers them."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from .channel import Channel
from .wire import VERSION, split_args, url_encode


class ApiCommands:
    """The API commands the peer answers (``api`` and ``bgapi``), one
    ``_api_<name>`` method each, and ``sendmsg``: a part of :class:`EslPeer`
    (switch.py), whose state they use."""

    async def run_api(self, name: str, args: str) -> str:
        handler = getattr(self, "_api_" + name, None)
        if handler is None:
            return f"-ERR {name} Command not found!\n"
        result: str = await handler(args)
        return result

    async def background_job(self, job: str, name: str, args: str) -> None:
        result = await self.run_api(name, args)
        headers = [("Job-UUID", job), ("Job-Command", name)]
        if args:
            headers.append(("Job-Command-Arg", args))
        self.emit("BACKGROUND_JOB", after=headers, body=result)

    async def _api_originate(self, args: str) -> str:
        argv = split_args(args)
        if len(argv) < 2:
            return ("-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] "
                    "[<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n")
        channel, outcome = await self.dial(argv[0])
        if channel is None or outcome != "SUCCESS":
            return f"-ERR {outcome}\n"
        match = re.fullmatch(r"&([a-z_]+)\((.*)\)", argv[1])
        app, data = (match.group(1), match.group(2)) if match else ("park", "")
        channel.handing_over = True
        await asyncio.sleep(self.handover_seconds)
        channel.handing_over = False
        self.spawn(self._run_app_then_hangup(channel, app, data), channel)
        return f"+OK {channel.uuid}\n"

    async def _api_uuid_broadcast(self, args: str) -> str:
        argv = split_args(args)
        if len(argv) < 2:
            return "-USAGE: <uuid> <path> [aleg|bleg|holdb|both]\n"
        channel = self._live(argv[0])
        if channel is None:
            return "-ERR No such channel!\n"
        path = argv[1]
        cause: str | None = None
        if "::" in path:
            app, data = path.split("::", 1)
            if "!" in app:
                app, cause = app.split("!", 1)
                cause = (cause or "normal_clearing").upper()
        else:
            app, data = "playback", path
        if not self._send_app(channel, app, data, True):  # switch_ivr_broadcast: event-lock
            return "+OK Message sent\n"
        if cause:
            self._send_app(channel, "hangup", cause, True)
        return "+OK Message sent\n"

    async def _api_uuid_kill(self, args: str) -> str:
        argv = split_args(args)
        channel = self._live(argv[0]) if argv else None
        if channel is None:
            return "-ERR No such channel!\n"
        self.hangup(channel, (argv[1] if len(argv) > 1 else "NORMAL_CLEARING").upper())
        return "+OK\n"

    async def _api_uuid_record(self, args: str) -> str:
        argv = split_args(args)
        if len(argv) < 3:
            return "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n"
        channel = self._live(argv[0])
        if channel is None:
            return "-ERR Cannot locate session!\n"
        if argv[1] == "start":
            channel.recording = (argv[2], time.monotonic())
            self.emit("RECORD_START", channel, after=[("Record-File-Path", argv[2])])
        elif argv[1] == "stop":
            self._stop_recording(channel)
        return "+OK Success\n"

    async def _api_uuid_setvar(self, args: str) -> str:
        argv = args.split(" ", 2)
        channel = self._live(argv[0]) if argv else None
        if channel is None or len(argv) < 2:
            return "-ERR No such channel!\n"
        if len(argv) == 3:
            channel.variables[argv[1]] = argv[2]
        else:
            channel.variables.pop(argv[1], None)
        return "+OK\n"

    async def _api_uuid_setvar_multi(self, args: str) -> str:
        """mod_commands uuid_setvar_multi: ``<uuid> <var>=<value>;...``; an
        empty value (or none) unsets the variable."""
        channel_uuid, _, pairs = args.partition(" ")
        channel = self._live(channel_uuid)
        if channel is None:
            return "-ERR No such channel!\n"
        names = 0
        for pair in pairs.split(";"):
            name, _, value = pair.partition("=")
            if not name:
                continue
            names += 1
            if value:
                channel.variables[name] = value
            else:
                channel.variables.pop(name, None)
        return "+OK\n" if names else "-USAGE: <uuid> <var>=<value>;<var>=<value>...\n"

    async def _api_hash(self, args: str) -> str:
        """mod_hash: ``insert/<realm>/<key>/<value>``, ``select/<realm>/<key>``
        (the value, or nothing), ``delete/<realm>/<key>``."""
        argv = args.strip().split("/", 3)
        if len(argv) < 3:
            return "-ERR Usage: hash [insert|delete|select]/<realm>/<key>/<value>\n"
        key = f"{argv[1]}_{argv[2]}"
        if argv[0] == "insert" and len(argv) == 4:
            self.hashes[key] = argv[3]
            return "+OK\n"
        if argv[0] == "delete":
            return "+OK\n" if self.hashes.pop(key, None) is not None else "-ERR Not found\n"
        if argv[0] == "select":
            return self.hashes.get(key, "")
        return "-ERR Usage: hash [insert|delete|select]/<realm>/<key>/<value>\n"

    async def _api_uuid_getvar(self, args: str) -> str:
        argv = split_args(args)
        channel = self._live(argv[0]) if argv else None
        if channel is None or len(argv) < 2:
            return "-ERR No such channel!\n"
        return channel.variables.get(argv[1]) or "_undef_"

    async def _api_sched_hangup(self, args: str) -> str:
        """mod_commands sched_hangup: ``[+]<time> <uuid> [<cause>]``."""
        argv = split_args(args)
        if len(argv) < 2 or not argv[0].lstrip("+").isdigit():
            return "-USAGE: [+]<time> <uuid> [<cause>]\n"
        if self._live(argv[1]) is None:
            return "-ERR No such channel!\n"
        cause = argv[2].upper() if len(argv) > 2 else "ALLOTTED_TIMEOUT"
        self.schedule_hangup(int(argv[0].lstrip("+")), argv[1], cause)
        return "+OK\n"

    async def _api_sched_del(self, args: str) -> str:
        """mod_commands sched_del: a task id or a group; always ``+OK Deleted: N``."""
        tasks = self.scheduled.pop(args.strip(), [])
        for handle in tasks:
            handle.cancel()
        if tasks:
            self.log.append(("unschedule", args.strip()))
        return f"+OK Deleted: {len(tasks)}\n"

    async def _api_uuid_displace(self, args: str) -> str:
        """mod_commands uuid_displace: ``<uuid> [start|stop] <path> [<limit>] [mux]``."""
        argv = split_args(args)
        if len(argv) < 3:
            return "-USAGE: <uuid> [start|stop] <path> [<limit>] [mux]\n"
        channel = self._live(argv[0])
        if channel is None:
            return "-ERR Cannot locate session!\n"
        if argv[1] == "start":
            channel.displacing.add(argv[2])
            self.log.append(("music on", channel.uuid))
        elif argv[1] == "stop":
            if argv[2] not in channel.displacing:
                return "-ERR Cannot stop displace session!\n"
            channel.displacing.discard(argv[2])
            self.log.append(("music off", channel.uuid))
        else:
            return "-USAGE: <uuid> [start|stop] <path> [<limit>] [mux]\n"
        return "+OK Success\n"

    def schedule_hangup(self, seconds: int, channel_uuid: str, cause: str) -> None:
        """switch_ivr_schedule_hangup(): a scheduler task in the group named
        after the channel, that keeps the channel id in a 37-byte buffer
        (struct hangup_helper): a longer id is cut, and then names no channel."""
        kept = channel_uuid[:36]

        def fire() -> None:
            tasks = self.scheduled.get(channel_uuid, [])
            if handle in tasks:
                tasks.remove(handle)
            channel = self._live(kept)
            if channel is not None:
                self.hangup(channel, cause)

        handle = asyncio.get_running_loop().call_later(seconds, fire)
        self.scheduled.setdefault(channel_uuid, []).append(handle)
        self.log.append(("schedule", channel_uuid))

    async def _api_uuid_dump(self, args: str) -> str:
        argv = split_args(args)
        channel = self._live(argv[0]) if argv else None
        if channel is None:
            return "-ERR No such channel!\n"
        headers = channel.basic_data() + [(f"variable_{k}", v)
                                          for k, v in channel.variables.items()]
        if len(argv) > 1 and argv[1] == "json":
            return json.dumps(dict(headers))
        return "".join(f"{name}: {url_encode(value)}\n" for name, value in headers)

    async def _api_show(self, args: str) -> str:
        if not args.startswith("channels"):
            return "-USAGE: show channels [as json]\n"
        rows = [{"uuid": ch.uuid, "direction": ch.direction, "created": "",
                 "created_epoch": str(ch.created // 1_000_000), "name": ch.name,
                 "state": ch.state, "cid_name": ch.caller_number, "cid_num": ch.caller_number,
                 "ip_addr": "", "dest": ch.destination,
                 "application": ch.variables.get("current_application", ""),
                 "application_data": ch.variables.get("current_application_data", ""),
                 "presence_id": ch.variables.get("presence_id", ""), "presence_data": "",
                 "callstate": ch.call_state,
                 "call_uuid": ch.originator.uuid if ch.originator else ch.uuid}
                for ch in self.channels.values() if not ch.destroyed]
        if args.endswith("as json"):
            data: dict[str, Any] = {"row_count": len(rows)}
            if rows:
                data["rows"] = rows
            return json.dumps(data) + "\n"
        lines = ["uuid,direction,created,created_epoch,name,state,cid_name,cid_num,dest,"
                 "callstate,call_uuid"]
        lines += [",".join(row.values()) for row in rows]
        return "\n".join(lines) + f"\n\n{len(rows)} total.\n"

    async def _api_status(self, args: str) -> str:
        return (f"UP 0 years, 0 days, 0 hours, 1 minute, 0 seconds\nFreeSWITCH ({VERSION}) is "
                f"ready\n{len(self.channels)} session(s) - peak 0, last 5min 0\n")

    def _live(self, channel_uuid: str) -> Channel | None:
        channel = self.channels.get(channel_uuid)
        if channel is None or channel.hangup_cause:
            return None
        return channel

    def sendmsg(self, channel_uuid: str, headers: dict[str, str]) -> str:
        channel = self._live(channel_uuid)
        if channel is None:
            return f"-ERR invalid session id [{channel_uuid}]"
        command = headers.get("call-command", "")
        if command == "execute":
            self._send_app(channel, headers.get("execute-app-name", ""),
                           headers.get("execute-app-arg", ""),
                           headers.get("event-lock", "") == "true")
        elif command == "hangup":
            self.hangup(channel, headers.get("hangup-cause", "NORMAL_CLEARING").upper())
        return "+OK"

