"""The exception tree. Every error has a stable ``error_id`` that API clients,
logs and tests can rely on, and a message a user can act on.

    CallConnectError
    ├── ConfigError                 bad or missing configuration
    ├── InvalidRequest              a call request is refused before anything is dialed
    │   ├── InvalidNumber
    │   ├── SameLegs
    │   ├── InvalidField
    │   └── GroupFromConfig         an agent group from the config cannot change over the API
    ├── SwitchError                 the switch (Asterisk, FreeSWITCH) failed us
    │   ├── SwitchUnavailable       not connected or not authenticated
    │   └── SwitchActionFailed      an action was refused or timed out
    ├── WhisperError                the whisper could not be rendered
    └── InvalidTransition           the core got an event its state cannot take
"""

from __future__ import annotations

from typing import Any


class CallConnectError(Exception):
    error_id = "callconnect-error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"error_id": self.error_id, "message": self.message, "details": self.details}


class ConfigError(CallConnectError):
    error_id = "invalid-config"


class InvalidRequest(CallConnectError):
    error_id = "invalid-request"


class InvalidNumber(InvalidRequest):
    error_id = "invalid-number"


class SameLegs(InvalidRequest):
    error_id = "same-legs"


class InvalidField(InvalidRequest):
    error_id = "invalid-field"


class GroupFromConfig(InvalidRequest):
    error_id = "group-from-config"


class SwitchError(CallConnectError):
    error_id = "switch-error"


class SwitchUnavailable(SwitchError):
    error_id = "switch-unavailable"


class SwitchActionFailed(SwitchError):
    error_id = "switch-action-failed"


class WhisperError(CallConnectError):
    error_id = "whisper-failed"


class InvalidTransition(CallConnectError):
    error_id = "invalid-transition"

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"event {event} cannot happen in state {state}", state=state, event=event)
