"""Dialplan applications, as mod_dptools runs them on a channel."""

from __future__ import annotations

import asyncio
import contextlib
import time

from .channel import Channel
from .wire import CAUSES, DIALSTATUS, now_us, split_args, wav_seconds


class Applications:
    """The dialplan applications a channel runs, one ``_app_<name>`` method
    each: a part of :class:`EslPeer` (switch.py), whose state they use."""

    def _send_app(self, ch: Channel, app: str, data: str, locked: bool) -> bool:
        """An application sent to the channel, queued to run in order; False
        if it ran at once instead: a playback that reached the channel before
        its originate handed it over fails there (see HANDOVER_SECONDS)."""
        if ch.handing_over and app == "playback":
            self._execute_event("CHANNEL_EXECUTE", ch, app, data)
            self._execute_event("CHANNEL_EXECUTE_COMPLETE", ch, app, data, "PLAYBACK ERROR")
            return False
        ch.apps.put_nowait((app, data, locked))
        return True

    async def _run_app_then_hangup(self, ch: Channel, app: str, data: str) -> None:
        await self._execute(ch, app, data)
        if not ch.hangup_cause:
            self.hangup(ch, "NORMAL_CLEARING")

    async def _execute(self, ch: Channel, app: str, data: str, locked: bool = True) -> None:
        """switch_core_session_exec(). An application that plays or waits
        (playback, read, sleep) parses the channel's messages as it goes
        (switch_ivr_parse_all_events): what was sent behind it runs at once,
        inside it, unless it was sent with ``event-lock: true``; seen on
        FreeSWITCH 1.10.12 in the lab."""
        ch.variables["current_application"] = app
        ch.variables["current_application_data"] = data
        ch.variables.pop("current_application_response", None)
        ch.set_state("CS_EXECUTE")
        self._execute_event("CHANNEL_EXECUTE", ch, app, data)
        handler = getattr(self, "_app_" + app, None)
        response = "_none_"
        if handler is not None and not locked and app in ("playback", "read", "sleep"):
            behind = asyncio.ensure_future(self._run_queued(ch))
            try:
                response = await handler(ch, data)
            finally:
                behind.cancel()
        elif handler is not None:
            response = await handler(ch, data)
        ch.variables["current_application_response"] = response
        self._execute_event("CHANNEL_EXECUTE_COMPLETE", ch, app, data, response)

    async def _until(self, ch: Channel, seconds: float | None) -> bool:
        """Wait ``seconds`` (None: for ever) unless the channel hangs up first;
        True if the time ran out with the channel still up."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ch.gone.wait(), seconds)
        return not ch.hangup_cause

    async def _app_park(self, ch: Channel, data: str) -> str:
        self.emit("CHANNEL_PARK", ch)
        timeout = ch.variables.pop("park_timeout", "")
        seconds, _, cause = timeout.partition(":")
        loop = asyncio.get_running_loop()
        expires = loop.time() + int(seconds) if seconds.isdigit() and int(seconds) > 0 else None
        while not ch.hangup_cause:
            if expires is not None and loop.time() >= expires:
                self.hangup(ch, (cause or "NORMAL_CLEARING").upper())
                break
            getter = asyncio.ensure_future(ch.apps.get())
            gone = asyncio.ensure_future(ch.gone.wait())
            key = asyncio.ensure_future(ch.dtmf.get())
            wait = None if expires is None else max(expires - loop.time(), 0)
            done, _ = await asyncio.wait({getter, gone, key}, timeout=wait,
                                         return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
            if key in done:  # switch_ivr_park dequeues a key (its DTMF event) and drops it
                self._dtmf_event(ch, key.result())
            else:
                key.cancel()
            if getter in done:
                app, app_data, locked = getter.result()
                await self._execute(ch, app, app_data, locked)
            else:
                getter.cancel()
        return "_none_"

    def _dtmf_event(self, ch: Channel, digit: str) -> None:
        """switch_channel_dequeue_dtmf(): a key taken from the channel."""
        self.emit("DTMF", ch, after=[("DTMF-Digit", digit), ("DTMF-Duration", "2000"),
                                     ("DTMF-Source", "RTP")])

    async def _app_answer(self, ch: Channel, data: str) -> str:
        if not ch.answered.is_set():
            ch.responses.append(200)
            self._answer(ch)
            self._caller_answered(ch)
        return "_none_"

    async def _app_pre_answer(self, ch: Channel, data: str) -> str:
        if not ch.answered.is_set() and 183 not in ch.responses:
            ch.responses.append(183)
            self.emit("CHANNEL_PROGRESS_MEDIA", ch)
        return "_none_"

    async def _app_ring_ready(self, ch: Channel, data: str) -> str:
        if not ch.progress and not ch.answered.is_set():
            ch.progress = now_us()
            ch.call_state = "RINGING"
            ch.responses.append(180)
            self.emit("CHANNEL_PROGRESS", ch)
        return "_none_"

    async def _app_unset(self, ch: Channel, data: str) -> str:
        ch.variables.pop(data, None)
        return "_none_"

    async def _app_event(self, ch: Channel, data: str) -> str:
        """mod_dptools event: ``Name=value,...``; Event-Name and
        Event-Subclass name the event, the channel's data comes with it."""
        fields = dict(part.split("=", 1) for part in data.split(",") if "=" in part)
        name = fields.pop("Event-Name", "CHANNEL_APPLICATION")
        self.emit(name, ch, before=[("Event-Subclass", fields.pop("Event-Subclass", ""))],
                  after=list(fields.items()))
        return "_none_"

    async def _app_record_session(self, ch: Channel, path: str) -> str:
        ch.recording = (path, time.monotonic())
        self.emit("RECORD_START", ch, after=[("Record-File-Path", path)])
        return "_none_"

    async def _app_stop_record_session(self, ch: Channel, data: str) -> str:
        self._stop_recording(ch)
        return "_none_"

    async def _app_read(self, ch: Channel, data: str) -> str:
        """mod_dptools read, switch_ivr_read(): ``<min> <max> <prompt|silence>
        <variable> <timeout ms> <terminators> <digit timeout ms>``. A key
        during the prompt stops it and counts; a terminator in what was read
        ends it (read_terminator_used); the digits go in the variable."""
        argv = data.split(" ")
        least, most = max(int(argv[0]), 1), int(argv[1])
        prompt, variable = argv[2], argv[3]
        first, terminators, between = int(argv[4]) / 1000, argv[5], int(argv[6]) / 1000
        ch.variables.pop("read_result", None)
        ch.variables.pop(variable, None)
        digits = ""
        if prompt != "silence":
            digits = await self._play_until_key(ch, prompt)
        terminator = ""
        if len(digits) < most:
            while not ch.hangup_cause:
                if digits and digits[-1] in terminators:
                    terminator, digits = digits[-1], digits[:-1]
                    break
                if len(digits) >= most:
                    break
                digit = await self._read_digit(ch, between if digits else first)
                if digit is None:
                    break
                digits += digit
        if terminator:
            ch.variables["read_terminator_used"] = terminator
        if digits:
            ch.variables[variable] = digits
        ch.variables["read_result"] = "success" if len(digits) >= least else "failure"
        return "_none_"

    async def _play_until_key(self, ch: Channel, path: str) -> str:
        """switch_ivr_play_file() with a digit buffer: the first key stops the
        file and is the buffer."""
        seconds = wav_seconds(path.removeprefix("file_string://").split("!")[0])
        if seconds is None:
            return ""
        self.emit("PLAYBACK_START", ch, after=[("Playback-File-Path", path)])
        digit = await self._read_digit(ch, seconds)
        self.emit("PLAYBACK_STOP", ch, after=[("Playback-File-Path", path),
                                              ("Playback-Status", "break" if digit else "done")])
        return digit or ""

    async def _app_playback(self, ch: Channel, path: str) -> str:
        """A file, or ``file_string://a!b`` (mod_dptools: one after the other)."""
        lengths = [wav_seconds(p) for p in path.removeprefix("file_string://").split("!")]
        if any(length is None for length in lengths):
            return "FILE NOT FOUND"
        seconds = sum(length or 0.0 for length in lengths)
        self.emit("PLAYBACK_START", ch, after=[("Playback-File-Path", path)])
        finished = await self._until(ch, seconds)
        self.emit("PLAYBACK_STOP", ch, after=[("Playback-File-Path", path),
                                              ("Playback-Status", "done" if finished else "break")])
        return "FILE PLAYED"

    async def _app_hangup(self, ch: Channel, cause: str) -> str:
        self.hangup(ch, (cause or "NORMAL_CLEARING").upper())
        return "_none_"

    async def _app_set(self, ch: Channel, data: str) -> str:
        name, _, value = data.partition("=")
        ch.variables[name] = value
        return "_none_"

    async def _app_sleep(self, ch: Channel, data: str) -> str:
        await self._until(ch, int(data or "0") / 1000)
        return "_none_"

    async def _app_sched_hangup(self, ch: Channel, data: str) -> str:
        self._sched_hangup_app(ch, data)
        return "_none_"

    def _sched_hangup_app(self, ch: Channel, data: str) -> None:
        """mod_dptools sched_hangup: ``[+]<time> [<cause>]``."""
        argv = split_args(data)
        if argv and argv[0].lstrip("+").isdigit():
            cause = argv[1].upper() if len(argv) > 1 else "ALLOTTED_TIMEOUT"
            self.schedule_hangup(int(argv[0].lstrip("+")), ch.uuid, cause)

    async def _app_displace_session(self, ch: Channel, data: str) -> str:
        self._displace_app(ch, data)
        return "_none_"

    def _displace_app(self, ch: Channel, data: str) -> None:
        """mod_dptools displace_session: ``<path> [<flags>] [+time_limit_ms]``,
        a media bug that plays the file to the channel (no audio here)."""
        argv = split_args(data)
        if argv:
            ch.displacing.add(argv[0])
            self.log.append(("music on", ch.uuid))

    async def _app_bridge(self, a: Channel, data: str) -> str:
        queued = asyncio.ensure_future(self._run_queued(a))
        try:
            b, outcome = await self.dial(data, originator=a)
        finally:
            queued.cancel()
        if b is None or outcome != "SUCCESS" or a.hangup_cause:
            if a.hangup_cause:
                outcome = "ORIGINATOR_CANCEL"
            a.variables["originate_disposition"] = outcome
            a.variables["DIALSTATUS"] = DIALSTATUS.get(outcome, outcome)
            if b is not None and outcome == "SUCCESS":
                self.hangup(b, "NORMAL_CLEARING")  # A went while B answered
            if not a.hangup_cause and a.variables.get("continue_on_fail") != "true":
                self.hangup(a, outcome if outcome in CAUSES else "NORMAL_TEMPORARY_FAILURE")
            return "_none_"
        if not a.answered.is_set():
            # switch_ivr_multi_threaded_bridge(): a caller not answered yet
            # (an incoming call) is answered once the peer is.
            self._answer(a)
        a.bridged_with, b.bridged_with = b, a
        a.bridged_at = b.bridged_at = now_us()
        a.variables["bridge_uuid"] = b.uuid
        a.variables["originate_disposition"] = "call accepted"
        a.set_state("CS_EXCHANGE_MEDIA")
        self.emit("CHANNEL_BRIDGE", a, after=[("Bridge-A-Unique-ID", a.uuid),
                                              ("Bridge-B-Unique-ID", b.uuid)])
        for side in (a, b):  # each side's bridge thread, once media flows
            self._execute_on(side, "execute_on_pre_bridge")
            await self._api_on(side, "api_before_bridge")
        waits = [asyncio.ensure_future(a.gone.wait()), asyncio.ensure_future(b.gone.wait())]
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()
        self.emit("CHANNEL_UNBRIDGE", a, after=[("Bridge-A-Unique-ID", a.uuid),
                                                ("Bridge-B-Unique-ID", b.uuid)])
        if b.hangup_cause:
            a.variables["bridge_hangup_cause"] = b.hangup_cause
        else:
            self.hangup(b, "NORMAL_CLEARING")
        if not a.hangup_cause and a.variables.get("hangup_after_bridge") == "true":
            self.hangup(a, "NORMAL_CLEARING")
        return "_none_"

    async def _run_queued(self, ch: Channel) -> None:
        """What is sent to a channel while its bridge rings runs at once."""
        while True:
            app, data, locked = await ch.apps.get()
            await self._execute(ch, app, data, locked)

    async def _api_on(self, ch: Channel, prefix: str) -> None:
        """switch_channel_api_on(): every variable whose name starts with
        ``prefix`` is ``<command> <args>``, run as an API command."""
        for name, value in list(ch.variables.items()):
            if name.startswith(prefix):
                command, _, args = value.strip().partition(" ")
                await self.run_api(command, args)
