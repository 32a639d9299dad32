"""What a call costs the store's disk: its bookkeeping (the daily cap's count
of the numbers dialed, the agent's busy and free marks) is written in the
same transaction as the call change that caused it, so it adds no commit (no
sync) of its own; and all of it is in the store once the call has ended."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controller.calls.decision import Placed
from controller.calls.request import make_request
from controller.calls.service import CallService
from controller.config import Config, MediaConfig
from controller.core.commands import DialLegB, OriginateLegA
from controller.core.events import LegAnswered, LegCreated, LegEnded, LegHungUp, LegRinging
from controller.core.outcomes import Leg
from controller.daemon.listener import StoreListener
from controller.daemon.metrics import Metrics
from controller.outbound import OutboundConfig
from controller.store import StoredCall, TimelineEntry, WebhookDelivery
from controller.store.sqlite import SqliteStore
from controller.tts import WhisperRenderer
from controller.webhooks.outbox import Outbox
from tests.conftest import LiveClients
from tests.unit.conftest import RecordingSwitch

LEG_A, LEG_B = "+27115550101", "+27115550202"
WAIT_SECONDS = 10.0


class CountedStore(SqliteStore):
    """The real store, counting its commits and the call changes saved."""

    commits = 0
    saves = 0

    async def _commit(self, batch: Any) -> None:
        await super()._commit(batch)
        self.commits += 1

    async def save_call(self, call: StoredCall, timeline: list[TimelineEntry],
                        deliveries: list[WebhookDelivery]) -> None:
        await super().save_call(call, timeline, deliveries)
        self.saves += 1


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountedStore]:
    store = CountedStore(tmp_path / "callconnect.sqlite")
    await store.open()
    yield store
    await store.close()


async def next_command(switch: RecordingSwitch, kind: type[Any]) -> Any:
    async with asyncio.timeout(WAIT_SECONDS):
        while not (found := [c for c in switch.commands if isinstance(c, kind)]):
            await asyncio.sleep(0.01)
    return found[0]


async def test_a_calls_bookkeeping_shares_the_commits_of_its_changes(
        tmp_path: Path, store: CountedStore, live_clients: LiveClients) -> None:
    config = Config()
    config.media = MediaConfig(whisper_dir=str(tmp_path / "media"),
                               recording_dir=str(tmp_path / "recordings"))
    config.compliance.max_attempts_per_number_per_day = 5  # the numbers dialed are counted
    outbox = Outbox(store, None, outbound=OutboundConfig())  # never run: nothing is sent
    listener = StoreListener(config, store, outbox, Metrics("asterisk"))
    switch = RecordingSwitch()
    calls = CallService(config, switch, WhisperRenderer(tmp_path / "media"), listener,
                        agents=store, records=store, outbound=live_clients(config.outbound))
    opened = store.commits  # the schema's
    decision = await calls.place(make_request(leg_a=LEG_A, leg_b=LEG_B, record=False))
    assert isinstance(decision, Placed)
    call = decision.call
    assert uuid.UUID(call.call_id).version == 7  # time-ordered: stored at the indexes' end
    await next_command(switch, OriginateLegA)
    now = time.time()  # the agent's history is read back as of now
    for event in (LegCreated(now + 1.0, Leg.A, "a"), LegRinging(now + 1.1, Leg.A),
                  LegAnswered(now + 2.0, Leg.A, "a")):
        call.events.put_nowait(event)
    await next_command(switch, DialLegB)
    for event in (LegCreated(now + 2.1, Leg.B, "b"), LegRinging(now + 2.2, Leg.B),
                  LegAnswered(now + 3.0, Leg.B, "b"), LegHungUp(now + 9.0, Leg.A, 16, channel="a"),
                  LegEnded(now + 9.1, Leg.A, 16, channel="a"),
                  LegEnded(now + 9.2, Leg.B, 16, channel="b")):
        call.events.put_nowait(event)
    result = await asyncio.wait_for(call.wait(), WAIT_SECONDS)
    await listener.flush()
    await outbox.stop()
    assert result["status"] == "completed"

    # The bookkeeping is all there: both numbers counted, the agent busy, then free.
    counted = await store.attempts_since([LEG_A, LEG_B], 0.0)
    assert {number: len(times) for number, times in counted.items()} == {LEG_A: 1, LEG_B: 1}
    target = call.core.legs[Leg.B].target
    assert target is not None
    [agent] = (await store.agent_states([target])).values()
    assert (agent.on_call, agent.last_ended_at, len(agent.calls)) == (None, now + 9.2, 1)
    # ... and it took no commit of its own: one commit for the call's creation,
    # then one for each change saved (leg A's and B's counts, the agent's busy
    # and free marks joined the changes that caused them).
    assert store.commits - opened == 1 + store.saves
