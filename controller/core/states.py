"""The states a call goes through, and the record of each move between them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CallState(StrEnum):
    NEW = "new"
    DIALING_A = "dialing-a"
    RINGING_A = "ringing-a"
    ROUTING = "routing"  # choosing whom to ring for leg B; A holds
    WHISPERING = "whispering"
    DIALING_B = "dialing-b"
    RINGING_B = "ringing-b"
    CONFIRMING = "confirming"  # B answered; hears the whisper, may press the confirm key
    BRIDGED = "bridged"
    ANNOUNCING = "announcing"  # A hears why B was not reached, then is hung up
    # A live call (inbound, or one leg): running its actions one at a time.
    PLAYING = "playing"
    GATHERING = "gathering"
    PAUSING = "pausing"
    RECORDING_STEP = "recording-step"  # a record start/stop the switch has not confirmed yet
    FETCHING = "fetching"  # asked a URL for the next actions
    IDLE = "idle"  # nothing to run: waiting for actions, up to the idle timeout
    ENDING = "ending"  # outcome decided; waiting for the last channels to go
    ENDED = "ended"



@dataclass(frozen=True)
class Transition:
    at: float
    from_state: CallState
    to_state: CallState
    reason: str


