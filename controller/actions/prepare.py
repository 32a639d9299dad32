"""Actions made ready for the switch: the rules that need the config, then
what the switch needs resolved beforehand (:class:`PreparedAction`).

A play's text and a gather's prompt are rendered by the whisper's renderer
(the text reaches espeak-ng on its standard input only; the switch gets a
file path); a play's file is a name inside ``[media] actions_dir``; a record
start gets a path beside the call's recording; a connect gets a plan built as
POST /v1/calls builds leg B's, by the same checks. Every action of a list is
checked before any is queued: InvalidField names the first field that breaks
a rule (``actions[2].action_url``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from controller.actions.spec import (
    Action,
    ConnectAction,
    GatherAction,
    PlayAction,
    RecordAction,
    RedirectAction,
)
from controller.calls.checks import CALLER_ID, RequestChecks
from controller.config import Config
from controller.core.plan import CallPlan, PreparedAction
from controller.errors import InvalidField
from controller.outbound import check_url
from controller.tts import WhisperRenderer

log = structlog.get_logger(__name__)

# A connect's caller_id that shows the inbound caller's own number.
PASS_CALLER = "caller"


@dataclass(frozen=True)
class ActionContext:
    """The call the actions run on: its id, its one leg (the caller of an
    inbound call, leg A of an outbound one), and the inbound caller's number
    (None for an outbound call)."""

    call_id: str
    leg_a: str
    caller: str | None = None


def new_action_id() -> str:
    return f"act_{uuid.uuid4().hex}"


class ActionPreparer:
    def __init__(self, config: Config, checks: RequestChecks, renderer: WhisperRenderer) -> None:
        self.config = config
        self.checks = checks
        self.renderer = renderer

    async def prepare(self, actions: Sequence[Action], context: ActionContext,
                      field: str = "actions") -> list[PreparedAction]:
        """Every action checked and made ready, in order; InvalidField (or
        WhisperError, WhisperBusy: the speech tools) before any is returned."""
        return [await self.prepare_one(action, context, f"{field}[{i}]")
                for i, action in enumerate(actions)]

    async def prepare_one(self, action: Action, context: ActionContext,
                          field: str) -> PreparedAction:
        action_id = new_action_id()
        spec = action.model_dump(mode="json")
        if isinstance(action, PlayAction):
            return PreparedAction(action_id, action.type, spec,
                                  audio=(await self._play_audio(action, field),))
        if isinstance(action, GatherAction):
            if action.action_url is not None:
                check_url(action.action_url, self.config.outbound, f"{field}.action_url")
            prompt = (await self._speak(action.prompt, f"{field}.prompt", None)
                      if action.prompt else None)
            return PreparedAction(action_id, action.type, spec, audio=(prompt,) if prompt else ())
        if isinstance(action, RedirectAction):
            check_url(action.url, self.config.outbound, f"{field}.url")
        elif isinstance(action, RecordAction) and action.command == "start":
            path = self.checks.recording_path(f"{context.call_id}-{action_id}")
            return PreparedAction(action_id, action.type, spec,
                                  record_file=self.config.recording_path_on_switch(path))
        elif isinstance(action, ConnectAction):
            return PreparedAction(action_id, action.type, spec,
                                  connect=await self._connect_plan(action, action_id, context,
                                                                   field))
        return PreparedAction(action_id, action.type, spec)

    async def _play_audio(self, action: PlayAction, field: str) -> str:
        if action.text is not None:
            return await self._speak(action.text, f"{field}.text", action.voice or action.language)
        assert action.file is not None  # the model wants one of the two
        folder = Path(self.config.media.actions_dir)
        path = folder / action.file
        # The name's pattern keeps it inside the folder; a link out of it is refused too.
        if not path.is_file() or not path.resolve().is_relative_to(folder.resolve()):
            raise InvalidField(f"{field}.file: there is no file {action.file!r} in the folder "
                               "[media] actions_dir names: copy it there, or name one that is",
                               field=f"{field}.file")
        return self.config.action_file_on_switch(path)

    async def _speak(self, text: str, field: str, voice: str | None) -> str:
        audio = await self.renderer.render(text, field, voice)
        return self.config.whisper_path_on_switch(audio.path)

    async def _connect_plan(self, action: ConnectAction, action_id: str, context: ActionContext,
                            field: str) -> CallPlan:
        """Leg B's plan as POST /v1/calls makes it, the call's one leg as leg A."""
        # As the request's routing(): plain data, options left unset left out.
        routing = action.model_dump(mode="json", include={"to", "fallbacks"}, exclude_none=True)
        spec = self.checks.options_spec(routing["to"], routing.get("fallbacks"), action,
                                        f"{field}.to", f"{field}.")
        if context.leg_a in [item.to for item in spec.items]:
            raise InvalidField(f"{field}.to names the call's own leg ({context.leg_a}): a connect "
                               "joins two different parties", field=f"{field}.to")
        time_limit = self.checks.time_limit(action, f"{field}.")
        caller_id = self._caller_id(action.caller_id, context, f"{field}.caller_id")
        whisper = await self.checks.render_whisper(action.whisper, f"{field}.whisper")
        record = self.config.calls.record if action.record is None else action.record
        recording = self.checks.recording_path(f"{context.call_id}-{action_id}") if record else None
        return self.checks.plan(context.call_id, context.leg_a, spec, action, time_limit,
                                caller_id, whisper, recording)

    def _caller_id(self, asked: str | None, context: ActionContext, field: str) -> str:
        if asked != PASS_CALLER:
            return self.checks.caller_id(asked, field)
        if context.caller is None:
            raise InvalidField(f"{field} \"caller\" passes an inbound caller's number through; "
                               "this call is outbound: name an allowed number instead",
                               field=field)
        if CALLER_ID.fullmatch(context.caller):
            return context.caller
        # A caller without a number (a SIP URI, anonymous): the agent sees the default.
        log.info("action.caller_id_not_a_number", call_id=context.call_id)
        return self.checks.caller_id(None, field)
