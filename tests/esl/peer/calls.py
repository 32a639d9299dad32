"""Calls: dialing out, calling in, answering and hanging up."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

from .channel import Channel
from .phones import SIP_STATUS, Caller, Phone, phone_for, phone_named
from .wire import CAUSE_NAMES, CAUSES, STATE_NUMBERS, now_us, parse_dial_string, split_top, write_recording


class Calls:
    """Dialing (originate and bridge), calls coming in, answering and hanging
    up: a part of :class:`EslPeer` (switch.py), whose state they use."""

    async def dial(self, dial_string: str,
                   originator: Channel | None = None) -> tuple[Channel | None, str]:
        """switch_ivr_originate(): ``{global vars}`` then targets, ``|`` one
        after the other, ``,`` all at once, each with its own ``[vars]``.
        (channel, SUCCESS) once one wins, else the cause (and the channel that
        gave it, if one was created)."""
        self.dial_strings.append(dial_string)
        variables, rest = parse_dial_string(dial_string)
        if originator is not None:
            # Copied from the caller when the dial string does not set them.
            for name in ("group_confirm_key", "group_confirm_file", "group_confirm_read_timeout",
                         "group_confirm_cancel_timeout", "originate_continue_on_timeout"):
                if name in originator.variables and name not in variables:
                    variables[name] = originator.variables[name]
        channel: Channel | None = None
        outcome = "DESTINATION_OUT_OF_ORDER"
        for group in split_top(rest, "|"):
            channel, outcome, timed_out = await self._dial_group(variables, group, originator)
            if outcome == "SUCCESS" or (originator is not None and originator.gone.is_set()):
                break
            if timed_out and variables.get("originate_continue_on_timeout") != "true":
                break
        return channel, outcome

    async def _dial_group(self, variables: dict[str, str], group: str, originator: Channel | None
                          ) -> tuple[Channel | None, str, bool]:
        """One ``,`` list: every leg at once; the first to answer (or, with
        group_confirm_key, to confirm) wins and the others are hung up with
        LOSE_RACE; NO_ANSWER for all at originate_timeout; ORIGINATOR_CANCEL
        if the caller goes. (channel, outcome, timed out)."""
        legs: list[Channel] = []
        failure = "DESTINATION_OUT_OF_ORDER"
        for spec in split_top(group, ","):
            local, target = parse_dial_string(spec)
            channel, cause = self._create_channel({**variables, **local}, target, originator)
            if channel is None:
                failure = cause
            else:
                legs.append(channel)
        if not legs:
            return None, failure, False
        loop = asyncio.get_running_loop()
        timeout = float(variables.get("originate_timeout") or 60)
        key = variables.get("group_confirm_key", "")
        # group_confirm_cancel_timeout: once a leg confirms, leg_timeout stops counting.
        cancel_timeout = -1 if variables.get("group_confirm_cancel_timeout") in ("true", "1") else 0
        start = loop.time()
        while True:
            winner = next((ch for ch in legs if ch.winner and not ch.hangup_cause), None)
            if winner is None:
                for ch in legs:
                    if not ch.answered.is_set() or ch.hangup_cause or ch.tagged:
                        continue
                    if not key:
                        winner = ch
                        break
                    ch.tagged = True
                    cancel_timeout = 1 if cancel_timeout < 0 else cancel_timeout
                    self.spawn(self._confirm(ch, key, variables), ch)
            if winner is not None:
                for ch in legs:
                    if ch is not winner and not ch.hangup_cause:
                        if len(legs) > 1:
                            ch.variables["group_dial_status"] = "loser"
                        self.hangup(ch, "LOSE_RACE" if len(legs) > 1 else "NO_ANSWER")
                return winner, "SUCCESS", False
            elapsed = loop.time() - start
            ended: str | None = None
            if originator is not None and originator.gone.is_set():
                ended = "ORIGINATOR_CANCEL"
            elif elapsed >= timeout:
                ended = "NO_ANSWER"
            elif all(ch.hangup_cause for ch in legs):
                first = legs[0]
                return first, first.hangup_cause or "NORMAL_CLEARING", False
            if ended is not None:
                for ch in legs:
                    self.hangup(ch, ended)
                return legs[0], ended, ended == "NO_ANSWER"
            if cancel_timeout <= 0:
                for ch in legs:
                    limit = ch.variables.get("leg_timeout", "")
                    if limit.isdigit() and int(limit) > 0 and elapsed > int(limit) \
                            and not ch.hangup_cause:
                        self.hangup(ch, "ALLOTTED_TIMEOUT")  # check_per_channel_timeouts
            await asyncio.sleep(0.01)

    def _create_channel(self, variables: dict[str, str], target: str,
                        originator: Channel | None) -> tuple[Channel | None, str]:
        """switch_core_session_outgoing_channel(): the channel, ringing its
        phone, or the cause of not creating one."""
        variables = dict(variables)
        extra: dict[str, str] = {}
        gateway = re.fullmatch(r"sofia/gateway/([^/]+)/(.+)", target)
        profile = re.fullmatch(r"sofia/([^/]+)/(.+)", target)
        user = re.fullmatch(r"user/([^@/]+)(?:@(.+))?", target)
        if any(c in target for c in "{}[]|,") and not profile:
            return None, "CHAN_NOT_IMPLEMENTED"
        if gateway:
            if self.gateways is not None and gateway.group(1) not in self.gateways:
                return None, "INVALID_GATEWAY"
            destination = gateway.group(2)
            name = f"sofia/external/{destination}"
            extra = {"sip_gateway_name": gateway.group(1), "sip_profile_name": "external"}
            phone = phone_for(destination, self.answer_delay, self.reject_delay, self.hangup_after)
        elif user:
            # mod_dptools user_outgoing_channel: the directory user's contact.
            username, domain = user.group(1), user.group(2) or self.domain
            if self.directory is not None and username not in self.directory:
                return None, "SUBSCRIBER_ABSENT"
            if username.startswith("offline"):
                return None, "USER_NOT_REGISTERED"  # sofia_contact: error/user_not_registered
            destination = f"sip:{username}@127.0.0.1:5070"
            name = f"sofia/internal/{username}@127.0.0.1:5070"
            extra = {"dialed_user": username, "dialed_domain": domain,
                     "presence_id": f"{username}@{domain}", "sip_profile_name": "internal"}
            phone = phone_named(username, self.answer_delay, self.reject_delay)
        elif profile:
            if profile.group(1) not in self.profiles:
                return None, "INVALID_PROFILE"
            destination = profile.group(2)
            name = f"sofia/{profile.group(1)}/{destination.removeprefix('sip:')}"
            phone = phone_for(destination, self.answer_delay, self.reject_delay, self.hangup_after)
        else:
            return None, "CHAN_NOT_IMPLEMENTED"
        channel_uuid = variables.pop("origination_uuid", "") or str(uuid.uuid4())
        if channel_uuid in self.channels:
            return None, "INVALID_CALL_REFERENCE"
        caller = variables.get("origination_caller_id_number", "0000000000")
        channel = Channel(channel_uuid, name, destination, {}, caller, originator=originator)
        channel.variables.update({
            "direction": "outbound", "is_outbound": "true", "uuid": channel_uuid,
            "session_id": str(next(self._sequence)), "channel_name": name,
            "sip_destination_url": destination if destination.startswith("sip")
            else f"sip:{destination}@127.0.0.1", **extra,
        })
        if originator is not None:
            channel.variables.update({"originator": originator.uuid,
                                      "originating_leg_uuid": originator.uuid,
                                      "call_uuid": originator.uuid})
        channel.variables.update(variables)
        channel.phone = phone
        self.channels[channel_uuid] = channel
        self.emit("CHANNEL_CREATE", channel)
        channel.phone_task = self.spawn(self._phone(channel, phone), channel)
        return channel, "SUCCESS"

    async def _confirm(self, ch: Channel, key: str, variables: dict[str, str]) -> None:
        """switch_ivr_originate.c collect_thread_run() on a leg that answered:
        with the key ``exec``, run group_confirm_file as ``<app> <args>`` and
        win if still up after it; else play group_confirm_file and read the
        key (group_confirm_read_timeout ms, default 5000): the key wins, a
        wrong key or none plays the file and reads again, for as long as the
        leg is up."""
        file = variables.get("group_confirm_file", "")
        if key == "exec":
            app, _, data = file.partition(" ")
            await self._execute(ch, app, data)
            if not ch.hangup_cause:
                ch.winner = True
                ch.variables["group_dial_status"] = "winner"
            return
        read_timeout = variables.get("group_confirm_read_timeout", "")
        seconds = int(read_timeout) / 1000 if read_timeout.isdigit() else 5.0
        pressed = False
        while not ch.hangup_cause:
            if file:
                await self._app_playback(ch, file)
            if ch.hangup_cause:
                return
            phone = ch.phone
            if phone is not None and phone.press is not None and not pressed:
                pressed = True  # a person presses once; the prompt again gets nothing
                self.spawn(self._press(ch, phone.press, phone.press_after), ch)
            digit = await self._read_digit(ch, seconds)
            if digit is None:
                continue
            if digit == key:
                ch.winner = True
                ch.variables["group_dial_status"] = "winner"
                return

    async def _press(self, ch: Channel, key: str, after: float) -> None:
        await asyncio.sleep(after)
        if not ch.hangup_cause:
            ch.dtmf.put_nowait(key)

    async def _read_digit(self, ch: Channel, seconds: float) -> str | None:
        """switch_ivr_read() for one digit; the DTMF event is fired when the
        digit is taken (switch_channel_dequeue_dtmf)."""
        getter = asyncio.ensure_future(ch.dtmf.get())
        gone = asyncio.ensure_future(ch.gone.wait())
        done, _ = await asyncio.wait({getter, gone}, timeout=seconds,
                                     return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if getter not in done:
            getter.cancel()
            return None
        digit: str = getter.result()
        self._dtmf_event(ch, digit)
        return digit

    async def _phone(self, ch: Channel, phone: Phone) -> None:
        await asyncio.sleep(0.01)  # the INVITE's way there
        if phone.ring and not ch.hangup_cause:
            ch.progress = now_us()
            ch.call_state = "RINGING"
            ch.set_state("CS_CONSUME_MEDIA")
            self.emit("CHANNEL_PROGRESS", ch)
        if phone.refuse_after is not None:
            await asyncio.sleep(phone.refuse_after)
            ch.variables["sip_term_status"] = str(phone.refuse_code)
            self.hangup(ch, phone.refuse_cause, "recv_refuse")
            return
        if phone.answer_after is None:
            return  # rings until the originate gives up
        await asyncio.sleep(phone.answer_after)
        if ch.hangup_cause:
            return
        self._answer(ch)
        if phone.hangup_after is not None:
            await asyncio.sleep(phone.hangup_after)
            if not ch.hangup_cause:
                self.hangup(ch, "NORMAL_CLEARING", "recv_bye")

    def _answer(self, ch: Channel) -> None:
        ch.answered_at = now_us()
        ch.call_state = "ACTIVE"
        ch.set_state("CS_CONSUME_MEDIA")
        ch.answered.set()
        self.emit("CHANNEL_ANSWER", ch)
        self._execute_on(ch, "execute_on_answer")

    def _execute_on(self, ch: Channel, prefix: str) -> None:
        """switch_channel_execute_on(): every variable whose name starts with
        ``prefix`` names an application and its arguments, run at once (only
        the ones that return at once are simulated)."""
        for name, value in list(ch.variables.items()):
            if not name.startswith(prefix):
                continue
            app, _, data = value.strip().partition(" ")
            # switch_core_session_exec(): the same events as any application.
            self._execute_event("CHANNEL_EXECUTE", ch, app, data)
            if app == "sched_hangup":
                self._sched_hangup_app(ch, data)
            elif app == "displace_session":
                self._displace_app(ch, data)
            self._execute_event("CHANNEL_EXECUTE_COMPLETE", ch, app, data, "_none_")

    def hangup(self, ch: Channel, cause: str, disposition: str | None = None) -> None:
        """switch_channel_perform_hangup(), then the hangup state handlers."""
        if ch.hangup_cause:
            return
        if cause.isdigit():
            cause = CAUSE_NAMES.get(int(cause), "NORMAL_CLEARING")
        if ch.direction == "inbound" and not disposition and not ch.answered.is_set():
            ch.responses.append(SIP_STATUS.get(cause, 480))  # the INVITE's final answer
        if disposition == "recv_bye":  # sofia_handle_sip_i_bye, before the hangup
            ch.variables["sip_term_status"] = "200"
            ch.variables["proto_specific_hangup_cause"] = "sip:200"
        elif disposition:  # recv_refuse: mod_sofia sets it before hanging up
            ch.variables["sip_hangup_disposition"] = disposition
        ch.hangup_cause = cause
        self.hangups.append((ch.uuid, cause))
        ch.hungup_at = now_us()
        ch.state_number = STATE_NUMBERS["CS_HANGUP"]
        self.emit("CHANNEL_HANGUP", ch, before=[("Hangup-Cause", cause)])
        ch.variables["hangup_cause"] = cause
        code = CAUSES.get(cause, 16)
        ch.variables["hangup_cause_q850"] = str(code if code <= 127 else 16)
        if disposition == "recv_bye":  # after switch_channel_hangup() returned
            ch.variables["sip_hangup_disposition"] = disposition
        elif not disposition:  # ours: mod_sofia's on_hangup handler
            ch.variables["sip_hangup_disposition"] = (
                "send_bye" if ch.answered.is_set()
                else "send_refuse" if ch.direction == "inbound" else "send_cancel")
        ch.call_state = "HANGUP"
        self._stop_recording(ch)
        ch.gone.set()
        phone = ch.phone_task
        if phone is not None and phone is not asyncio.current_task():
            phone.cancel()
        asyncio.get_running_loop().call_later(0.02, self._complete, ch)

    def _complete(self, ch: Channel) -> None:
        ch.set_state("CS_REPORTING")
        if ch.answered_at:
            billsec = max((ch.hungup_at - ch.answered_at) // 1_000_000, 0)
            ch.variables["billsec"] = str(billsec)
        self.emit("CHANNEL_HANGUP_COMPLETE", ch)
        ch.set_state("CS_DESTROY")
        self.emit("CHANNEL_DESTROY", ch)
        ch.destroyed = True
        self.channels.pop(ch.uuid, None)
        for task in list(ch.tasks):
            task.cancel()

    def _stop_recording(self, ch: Channel) -> None:
        if ch.recording is None:
            return
        path, started = ch.recording
        ch.recording = None
        write_recording(path, time.monotonic() - started)
        self.emit("RECORD_STOP", ch, after=[("Record-File-Path", path),
                                            ("Record-Completion-Cause", "success")])


    async def call_in(self, number: str, caller: Caller | None = None,
                      context: str = "callconnect-inbound") -> Channel:
        """A phone calls ``number`` on the switch: mod_sofia creates the
        channel and runs the dialplan (dialplans/freeswitch/
        callconnect_inbound.xml, the only context the peer knows: any other
        is refused with NO_ROUTE_DESTINATION, and so is a number it does not
        match)."""
        caller = caller or Caller()
        name = f"sofia/lab/{caller.number}@127.0.0.1:5190"
        ch = Channel(str(uuid.uuid4()), name, number, {}, caller.number, direction="inbound",
                     caller=caller)
        ch.variables.update({"direction": "inbound", "uuid": ch.uuid, "channel_name": name,
                             "session_id": str(next(self._sequence)),
                             "sip_profile_name": "lab", "destination_number": number})
        self.channels[ch.uuid] = ch
        self.emit("CHANNEL_CREATE", ch)
        ch.phone_task = self.spawn(self._dialplan(ch, context), ch)
        await asyncio.sleep(0)
        return ch

    async def _dialplan(self, ch: Channel, context: str) -> None:
        if context != "callconnect-inbound" or not re.fullmatch(r"\+?[0-9]{1,20}", ch.destination):
            self.hangup(ch, "NO_ROUTE_DESTINATION")
            return
        for app, data in (("set", f"callconnect_dialed={ch.destination}"),
                          ("sched_hangup", f"+{self.unclaimed_after} NORMAL_CIRCUIT_CONGESTION"),
                          ("ring_ready", ""),
                          ("event", "Event-Name=CUSTOM,Event-Subclass=callconnect::incoming")):
            await self._execute(ch, app, data)
        await self._run_app_then_hangup(ch, "park", "")

    def _caller_answered(self, ch: Channel) -> None:
        """The caller got the 200: it presses its keys and may hang up."""
        caller = ch.caller
        if caller is None:
            return

        async def act() -> None:
            started = asyncio.get_running_loop().time()
            for at, key in caller.keys:
                await asyncio.sleep(max(at - (asyncio.get_running_loop().time() - started), 0))
                if ch.hangup_cause:
                    return
                ch.dtmf.put_nowait(key)
            if caller.hangup_after is not None:
                left = caller.hangup_after - (asyncio.get_running_loop().time() - started)
                if await self._until(ch, max(left, 0)):
                    self.hangup(ch, "NORMAL_CLEARING", "recv_bye")

        self.spawn(act(), ch)


    async def foreign_call(self, destination: str = "+27115550199", *, dial_string: str = "",
                           hold: float = 0.1) -> str:
        """Another application's call on the same switch: its events must not
        reach a controller that filters on its own calls. It stays up ``hold``
        seconds once answered (a directory user's call makes the user busy)."""
        gateway = next(iter(self.gateways or {"lab"}))
        channel, outcome = await self.dial(dial_string or f"sofia/gateway/{gateway}/{destination}")
        if channel is not None and outcome == "SUCCESS":
            await asyncio.sleep(hold)
            self.hangup(channel, "NORMAL_CLEARING", "recv_bye")
        await asyncio.sleep(0.05)
        return channel.uuid if channel is not None else ""
