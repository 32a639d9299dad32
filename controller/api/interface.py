"""What the REST API needs from the daemon, and all it may reach: the daemon
implements this, and the API never imports the daemon."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from controller.actions.spec import ActionsRequest
from controller.api.status.schemas import Status
from controller.calls.decision import Decision
from controller.calls.request import CallRequest
from controller.compliance.dnc import DncEntry
from controller.inbound.numbers import Number, NumberSettings
from controller.recording_links import RecordingLinks
from controller.routing.agents import AgentState
from controller.routing.spec import Group
from controller.store import (
    CallPage,
    DeliveryPage,
    DeliveryState,
    DisabledUrl,
    StoredCall,
    TimelineEntry,
    WebhookDelivery,
)


@dataclass(frozen=True)
class Hangup:
    """A call asked to end: hung up or canceled, or ``already_ended``."""

    call: StoredCall
    already_ended: bool = False


@dataclass(frozen=True)
class QueuedActions:
    """Actions given to a live call (their ids, in order), or ``ended``: the
    call has ended (``status``) and took none."""

    action_ids: tuple[tuple[str, str], ...] = ()  # (id, type)
    ended: bool = False
    status: str | None = None


class Operations(Protocol):
    @property
    def api_tokens(self) -> Sequence[str]:
        """Bearer tokens that may use the API."""

    @property
    def recording_links(self) -> RecordingLinks:
        """Checks the signed recording links (served without a token)."""

    # Calls.
    async def place_call(self, request: CallRequest, idempotency_key: str | None,
                         token: str) -> Decision:
        """``token``: the bearer token the request came with; an idempotency
        key is that token's alone (only a hash of the token is kept)."""

    async def list_calls(self, *, status: str | None, created_after: float | None,
                         created_before: float | None, limit: int,
                         cursor: str | None) -> CallPage:
        """InvalidRequest (or ValueError) for a cursor this API did not give out."""

    async def get_call(self, call_id: str) -> StoredCall | None: ...

    async def timeline(self, call_id: str) -> list[TimelineEntry]: ...

    async def hang_up(self, call_id: str) -> Hangup | None:
        """End a live call, cancel a scheduled one; None if there is no such call."""

    async def queue_actions(self, call_id: str, request: ActionsRequest) -> QueuedActions | None:
        """Check and prepare the actions, then queue them on the live call;
        None if there is no such call. InvalidRequest names the field of a
        refused action (nothing is queued then); WhisperError, WhisperBusy:
        a text could not be spoken."""

    # Agent groups.
    def agent_groups(self) -> Mapping[str, Group]: ...

    async def agent_states(self, agents: Sequence[str]) -> Mapping[str, AgentState]: ...

    async def put_group(self, name: str, data: dict[str, Any]) -> Group:
        """InvalidRequest if bad; GroupFromConfig if the config file has it."""

    async def delete_group(self, name: str) -> bool:
        """False if there is no such group; GroupFromConfig if the config file has it."""

    # Numbers that take inbound calls.
    def inbound_number(self, text: str) -> str:
        """The number normalised; InvalidRequest if it is not one."""

    def get_number(self, number: str) -> Number | None: ...

    def list_numbers(self, cursor: str | None, limit: int) -> tuple[list[Number], str | None]:
        """InvalidRequest for a cursor this API did not give out."""

    async def put_number(self, number: str, settings: NumberSettings) -> Number:
        """InvalidRequest if bad; NumberFromConfig if the config file has it."""

    async def delete_number(self, number: str) -> bool:
        """False if there is no such number; NumberFromConfig if the config file has it."""

    # The do-not-call list.
    def dnc_number(self, text: str) -> str:
        """The number normalised; InvalidRequest if it is not one."""

    async def dnc_entry(self, number: str) -> DncEntry | None: ...

    async def add_dnc(self, number: str, reason: str) -> DncEntry: ...

    async def remove_dnc(self, number: str) -> bool:
        """False if it is not on the list; DncFromFile if the file has it."""

    async def list_dnc(self, cursor: str | None,
                       limit: int) -> tuple[list[DncEntry], str | None]: ...

    # Webhook deliveries.
    async def list_deliveries(self, *, call_id: str | None, state: DeliveryState | None, limit: int,
                              cursor: str | None) -> DeliveryPage:
        """InvalidRequest for a cursor this API did not give out."""

    async def redeliver(self, event_id: str) -> WebhookDelivery | None:
        """Queue the delivery again now, with its event id; None if there is
        none; UrlDisabled while its URL is disabled."""

    async def disabled_urls(self, limit: int,
                            cursor: str | None) -> tuple[list[DisabledUrl], str | None]:
        """InvalidRequest for a cursor this API did not give out."""

    async def enable_url(self, url_id: str, redeliver: bool) -> tuple[DisabledUrl, int] | None:
        """Deliver to the URL again (and queue its disabled deliveries if
        ``redeliver``); None if no disabled URL has this id."""

    # Health.
    async def status(self) -> Status: ...

    def store_failed(self) -> None:
        """A store operation failed: /status checks the store again, not a cached result."""

    async def metrics_text(self) -> bytes:
        """The metrics in Prometheus' text format."""
