"""The call service's answer to a request is a decision: placed, scheduled,
replayed or refused, the refusal carrying its error_id (and, for a rule or
limit, its HTTP status). The daemon adds its own two refusals: draining and
over its rate."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controller.calls.decision import Placed, Refused, Replayed, Scheduled
from controller.calls.request import CallRequest, make_request
from controller.calls.runner import ActiveCall, DuplicateRequest
from controller.calls.service import CallService
from controller.config import Config, LimitsConfig
from controller.daemon.admission import Admission, LegLimits
from controller.daemon.service import Daemon
from controller.errors import OutsideCallingHours
from controller.outbound import OutboundConfig
from controller.store import IdempotencyKey, StoredCall
from controller.tts import WhisperRenderer
from tests.conftest import LiveClients
from tests.unit.conftest import QuietListener, RecordingSwitch

LEG_A, LEG_B, LEG_B2 = "+27115550101", "+27115550202", "+27115550203"


KEY = IdempotencyKey("key-1", "token-hash", "body-hash")


class Appointments:
    """The scheduling the daemon injects: keeps what it was asked to schedule."""

    def __init__(self) -> None:
        self.asked: list[tuple[CallRequest, OutsideCallingHours, IdempotencyKey | None]] = []

    async def schedule(self, request: CallRequest, refusal: OutsideCallingHours,
                       idempotency_key: IdempotencyKey | None = None) -> StoredCall:
        self.asked.append((request, refusal, idempotency_key))
        return StoredCall(call_id="later", created_at=0.0, updated_at=0.0, state="scheduled",
                          status=None, request={}, snapshot={"scheduled_for": 1.0})


class SeenBefore(QuietListener):
    async def call_created(self, call: ActiveCall) -> None:
        raise DuplicateRequest(StoredCall(call_id="first", created_at=0.0, updated_at=0.0,
                                          state="ended", status="completed", request={},
                                          snapshot={}))


@pytest.fixture
async def service(tmp_path: Path,
                  live_clients: LiveClients) -> AsyncIterator[tuple[CallService, RecordingSwitch]]:
    switch = RecordingSwitch()
    calls = CallService(Config(), switch, WhisperRenderer(tmp_path), QuietListener(),  # type: ignore[arg-type]
                        outbound=live_clients(OutboundConfig()))
    yield calls, switch
    for call in calls.calls.values():
        if call.task is not None:
            call.task.cancel()


def request(**fields: Any) -> CallRequest:
    return make_request(**{"leg_a": LEG_A, "leg_b": LEG_B, "record": False, **fields})


def closed_now() -> str:
    hour = datetime.now(ZoneInfo("Africa/Johannesburg")).hour
    return f"{(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00"


async def test_each_refusal_is_a_decision_with_its_error_id(
        service: tuple[CallService, RecordingSwitch]) -> None:
    calls, switch = service
    await calls.compliance.add_dnc(LEG_B2, "")
    cases: list[tuple[CallRequest, str, int | None]] = [
        (request(leg_a="0800FLOWERS"), "invalid-number", None),
        (request(leg_b=LEG_A), "same-legs", None),
        (request(caller_id="+27 11"), "invalid-field", None),
        (request(leg_b=LEG_B2), "do-not-call", 403),
        (request(calling_hours=closed_now()), "outside-calling-hours", 403),
    ]
    for refused, error_id, http_status in cases:
        decision = await calls.place(refused)
        assert isinstance(decision, Refused), decision
        assert decision.reason.error_id == error_id
        assert getattr(decision.reason, "http_status", None) == http_status
    calls.compliance.cap = 1
    await calls.compliance.record("earlier", [LEG_B], time.time())
    capped = await calls.place(request())
    assert isinstance(capped, Refused) and capped.reason.error_id == "attempt-cap-reached"
    assert capped.reason.http_status == 429  # type: ignore[attr-defined]
    calls.compliance.cap = 0
    calls.limits = LegLimits(LimitsConfig(trunk_max_active=0, agent_max_active=0,
                                          trunk_calls_per_second=0.001), switch.trunk_of, calls.calls)
    assert isinstance(await calls.place(request()), Placed)
    over = await calls.place(request(leg_a="+27115550104", leg_b=LEG_B))
    assert isinstance(over, Refused) and over.reason.error_id == "trunk-limit"
    calls.limits = None
    switch.connected = False
    away = await calls.place(request())
    assert isinstance(away, Refused) and away.reason.error_id == "switch-unavailable"
    assert len(switch.commands) == 1  # only the call placed was dialed


async def test_outside_its_window_a_call_is_scheduled_only_when_asked_and_possible(
        service: tuple[CallService, RecordingSwitch]) -> None:
    calls, switch = service
    asked = request(calling_hours=closed_now(), outside_calling_hours="schedule")
    without = await calls.place(asked)  # the command line: no scheduling
    assert isinstance(without, Refused) and without.reason.error_id == "outside-calling-hours"
    calls.scheduling = appointments = Appointments()
    refused = await calls.place(request(calling_hours=closed_now()))
    assert isinstance(refused, Refused) and appointments.asked == []
    scheduled = await calls.place(asked, KEY)
    assert isinstance(scheduled, Scheduled) and scheduled.call.call_id == "later"
    assert scheduled.initial_response()["state"] == "scheduled"
    [(_, refusal, key)] = appointments.asked
    assert refusal.error_id == "outside-calling-hours" and key == KEY
    due = await calls.place(asked, scheduled_id="later")  # still closed when due: not again
    assert isinstance(due, Refused) and len(appointments.asked) == 1
    assert switch.commands == []


async def test_a_request_seen_before_is_replayed(tmp_path: Path, live_clients: LiveClients) -> None:
    calls = CallService(Config(), RecordingSwitch(), WhisperRenderer(tmp_path), SeenBefore(),  # type: ignore[arg-type]
                        outbound=live_clients(OutboundConfig()))
    decision = await calls.place(request(), KEY)
    assert isinstance(decision, Replayed) and decision.call.call_id == "first"
    assert decision.initial_response()["call_uuid"] == "first"


async def test_the_daemon_refuses_while_draining_and_over_its_rate(tmp_path: Path) -> None:
    config = Config()
    config.api.tokens = ["t"]
    config.store.path = str(tmp_path / "store.sqlite3")
    config.webhook.unsigned = True
    daemon = Daemon(config)
    await daemon.store.open()
    daemon.draining = True
    draining = await daemon.place_call(request(), None, "t")
    assert isinstance(draining, Refused) and draining.reason.error_id == "draining"
    assert draining.reason.http_status == 503  # type: ignore[attr-defined]
    daemon.draining = False
    daemon.admission = Admission(0.001, 0)
    first = await daemon.place_call(request(), None, "t")  # takes the one start there is
    assert isinstance(first, Refused) and first.reason.error_id == "switch-unavailable"
    limited = await daemon.place_call(request(), None, "t")
    assert isinstance(limited, Refused) and limited.reason.error_id == "rate-limited"
    assert limited.reason.http_status == 429  # type: ignore[attr-defined]
    assert limited.reason.details["retry_after"] > 0
    await daemon.store.close()
