"""The exception tree. Every error has a stable ``error_id`` that API clients,
logs and tests can rely on, and a message a user can act on.

    CallConnectError
    ├── ConfigError                 bad or missing configuration
    ├── InvalidRequest              a call request is refused before anything is dialed
    │   ├── InvalidNumber
    │   ├── SameLegs
    │   ├── InvalidField
    │   ├── GroupFromConfig         an agent group from the config cannot change over the API
    │   └── DncFromFile             a do-not-call number from the file cannot go over the API
    ├── CallRefused                 a valid call a compliance rule or limit does not allow now
    │   ├── DoNotCall               a number is on the do-not-call list            (403)
    │   ├── DestinationRefused      a target is outside the [destinations] policy   (403)
    │   ├── IdempotencyKeyReused    an Idempotency-Key came with another body       (422)
    │   ├── OutsideCallingHours     a number's local time is outside its window     (403)
    │   ├── AttemptCapReached       a number was called its most times in 24 hours  (429)
    │   ├── TrunkLimit              a trunk is at its calls per second or in progress (429)
    │   ├── AgentLimit              an agent is at its calls per second or in progress (429)
    │   ├── RateLimited             the daemon is at its calls per second or in progress (429)
    │   ├── WhisperBusy             every whisper render place stayed taken         (503)
    │   └── Draining                the daemon is shutting down                      (503)
    ├── SwitchError                 the switch (Asterisk, FreeSWITCH) failed us
    │   ├── SwitchUnavailable       not connected or not authenticated
    │   └── SwitchActionFailed      an action was refused or timed out
    ├── WhisperError                the whisper could not be rendered
    ├── OutboundRefused             a webhook or dial-whom URL may not be requested now
    ├── UrlDisabled                 a webhook URL answered 410 Gone; re-enable it first (409)
    ├── BodyTooLarge                a request body over api.max_body_bytes           (413)
    ├── DaemonFailed                a part of the daemon could not start or stopped: it exits
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


class NotALiveCall(InvalidRequest):
    """Actions were sent to a call connect (leg_a and leg_b): they run on
    single-leg and inbound calls."""

    error_id = "call-takes-no-actions"


class TooManyActions(InvalidRequest):
    """The call has been given as many actions as one call may have
    (:data:`controller.actions.spec.MAX_ACTIONS_PER_CALL`)."""

    error_id = "too-many-actions"


class GroupFromConfig(InvalidRequest):
    error_id = "group-from-config"


class DncFromFile(InvalidRequest):
    error_id = "dnc-from-file"


class NumberFromConfig(InvalidRequest):
    """A number from the config's [numbers] is changed only there."""

    error_id = "number-from-config"


class CallRefused(CallConnectError):
    """Nothing is wrong with the request, but placing it now would break a
    compliance rule or a limit. ``http_status`` is what the API answers;
    ``details["retry_after"]`` (seconds) is set when retrying later helps."""

    error_id = "call-refused"
    http_status = 403

    @property
    def retry_after(self) -> float | None:
        value = self.details.get("retry_after")
        return float(value) if value is not None else None


class DoNotCall(CallRefused):
    error_id = "do-not-call"


class DestinationRefused(CallRefused):
    error_id = "destination-refused"


class IdempotencyKeyReused(CallRefused):
    """The Idempotency-Key was first sent, by the same token, with another
    request body: replaying that call would answer a different request."""

    error_id = "idempotency-key-reused"
    http_status = 422


class OutsideCallingHours(CallRefused):
    error_id = "outside-calling-hours"


class AttemptCapReached(CallRefused):
    error_id = "attempt-cap-reached"
    http_status = 429


class TrunkLimit(CallRefused):
    error_id = "trunk-limit"
    http_status = 429


class AgentLimit(CallRefused):
    error_id = "agent-limit"
    http_status = 429


class RateLimited(CallRefused):
    error_id = "rate-limited"
    http_status = 429

    def __init__(self, wait: float) -> None:
        super().__init__("too many calls right now; retry after Retry-After seconds",
                         retry_after=round(wait, 3))
        self.wait = wait

    @property
    def retry_after(self) -> float:
        return self.wait


class WhisperBusy(CallRefused):
    """Every whisper render place (whisper.max_concurrent_renders) stayed
    taken for whisper.render_wait_seconds; nothing was dialed."""

    error_id = "whisper-busy"
    http_status = 503


class Draining(CallRefused):
    error_id = "draining"
    http_status = 503

    def __init__(self) -> None:
        super().__init__("the daemon is shutting down; retry on another one")


class SwitchError(CallConnectError):
    error_id = "switch-error"


class SwitchUnavailable(SwitchError):
    error_id = "switch-unavailable"


class SwitchActionFailed(SwitchError):
    error_id = "switch-action-failed"


class WhisperError(CallConnectError):
    error_id = "whisper-failed"


class OutboundRefused(CallConnectError):
    """Checked just before sending: the URL's host resolves to a non-public
    address, or the URL no longer fits the [outbound] policy."""

    error_id = "outbound-refused"


class UrlDisabled(CallConnectError):
    """A delivery cannot be queued again while its URL is disabled."""

    error_id = "url-disabled"


class BodyTooLarge(CallConnectError):
    error_id = "body-too-large"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the request body is over {max_bytes} bytes (api.max_body_bytes)",
                         max_bytes=max_bytes)


class DaemonFailed(CallConnectError):
    """The daemon cannot go on: its API address is taken, or one of its
    parts (the API server, the switch link, the outbox, the scheduler)
    ended unexpectedly. The process exits non-zero, so a supervisor sees it."""

    error_id = "daemon-failed"


class InvalidTransition(CallConnectError):
    error_id = "invalid-transition"

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"event {event} cannot happen in state {state}", state=state, event=event)
