"""Sending a list of commands, and the questions the backend asks the
switch about channels that are not necessarily its own: which endpoints are
busy, which channels exist."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import structlog

from controller.errors import SwitchActionFailed, SwitchError
from controller.numbers import ENDPOINT_PREFIX, TargetKind, target_of

from .actions import EslCommand, Verb
from .wire import Reply, channel_names, channel_rows

log = structlog.get_logger(__name__)

Send = Callable[[EslCommand], Awaitable[Reply]]
# Commands sent in one write, their replies in order.
SendTogether = Callable[[list[EslCommand]], Awaitable[list[Reply]]]
SHOW_CHANNELS = EslCommand(Verb.API, "show channels as json")


async def send_all(send: SendTogether, commands: list[EslCommand], call_id: str = "") -> None:
    """Send each in turn, a run of ``sendmsg`` in one write (a channel's queue
    of applications: a controller killed while sending it cannot leave the
    channel with its first applications and not the rest); SwitchActionFailed
    names the first refused (a hangup of a channel that is gone already, or
    an optional command, is fine)."""
    for group in _runs_of_sendmsg(commands):
        for esl, reply in zip(group, await send(group), strict=True):
            if reply.ok or esl.optional or _gone_already(esl, reply):
                continue
            raise SwitchActionFailed(f"FreeSWITCH refused {esl.name}: {reply.text}",
                                     action=esl.name, call_id=call_id)


async def send_quietly(send: Send, commands: list[EslCommand]) -> None:
    """Send each in turn, a refusal or failure only logged (the first failure
    ends the list: the link is gone)."""
    for esl in commands:
        try:
            reply = await send(esl)
        except SwitchError as exc:
            log.warning("esl.command_failed", command=esl.name, error=exc.message)
            return
        if not reply.ok and not _gone_already(esl, reply):
            log.warning("esl.command_refused", command=esl.name, reply=reply.text)


def _gone_already(esl: EslCommand, reply: Reply) -> bool:
    """A refusal that is what was wanted: the channel hung up by itself meanwhile."""
    return esl.missing_ok and "no such channel" in reply.text.lower()


def _runs_of_sendmsg(commands: list[EslCommand]) -> list[list[EslCommand]]:
    """``commands`` cut into groups: each run of sendmsgs one group, any
    other command a group of its own."""
    groups: list[list[EslCommand]] = []
    for esl in commands:
        if esl.verb is Verb.SENDMSG and groups and groups[-1][-1].verb is Verb.SENDMSG:
            groups[-1].append(esl)
        else:
            groups.append([esl])
    return groups


async def busy_targets(send: Send, targets: Sequence[str]) -> set[str]:
    """Endpoints (``endpoint:NAME``, the switch's user NAME) on a call of
    any kind: a channel whose presence_id is NAME@<domain> (FreeSWITCH
    sets it on calls to and from a directory user) in ``show channels``.
    Numbers and URIs it cannot tell about."""
    names = {t: t[len(ENDPOINT_PREFIX):].lower() for t in targets
             if target_of(t).kind is TargetKind.ENDPOINT}
    if not names:
        return set()
    try:
        reply = await send(SHOW_CHANNELS)
        rows = channel_rows(reply.body)
    except (SwitchError, ValueError) as exc:
        log.warning("esl.busy_targets_unknown", error=str(exc))
        return set()
    in_use = {row.get("presence_id", "").split("@", 1)[0].lower() for row in rows}
    return {target for target, name in names.items() if name in in_use}


async def active_channels(send: Send) -> list[str]:
    reply = await send(SHOW_CHANNELS)
    try:
        return channel_names(reply.body)
    except ValueError as exc:
        raise SwitchActionFailed(f"FreeSWITCH answered show channels with {reply.text[:80]!r}",
                                 action="api show") from exc
