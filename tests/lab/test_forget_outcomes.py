"""Ended calls' kept outcomes are deleted from AstDB on the real switch, a
batch at a time (controller/backends/asterisk/forget.py): every forgotten
call's entry goes, within the batching delay, and no other entry does."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from panoramisk import Manager

from controller.backends.asterisk.backend import OUTCOME_FAMILY, AsteriskBackend
from controller.config import Config
from tests.lab.conftest import OBSERVER_SECRET, OBSERVER_USERNAME

pytestmark = pytest.mark.lab


@pytest.fixture
async def observer(lab_config: Config) -> AsyncIterator[Manager]:
    # The controller's account cannot write AstDB (no `system`); the lab's observer can.
    manager = Manager(loop=asyncio.get_running_loop(), host=lab_config.asterisk.host,
                      port=lab_config.asterisk.port, username=OBSERVER_USERNAME,
                      secret=OBSERVER_SECRET, ping_delay=10)
    await asyncio.wait_for(manager.connect(), 10)
    yield manager
    manager.close()


async def kept(switch: AsteriskBackend, call_ids: list[str]) -> list[str]:
    return [call_id for call_id in call_ids if await switch.kept_outcome(call_id)]


async def keep(observer: Manager, call_ids: list[str]) -> None:
    for call_id in call_ids:
        response = await asyncio.wait_for(observer.send_action(
            {"Action": "DBPut", "Family": OUTCOME_FAMILY, "Key": call_id,
             "Val": "1700000000:16:ANSWER:4"}), 10)
        assert response.success, response


async def test_forgotten_calls_lose_their_outcome_and_others_keep_theirs(
        switch: AsteriskBackend, observer: Manager) -> None:
    forgotten = [str(uuid.uuid4()) for _ in range(40)]  # two batches
    other = str(uuid.uuid4())
    await keep(observer, [*forgotten, other])
    assert await kept(switch, [*forgotten, other]) == [*forgotten, other]
    for call_id in forgotten:
        switch.forget(call_id)
    left = forgotten
    for _ in range(100):
        left = await kept(switch, forgotten)
        if not left:
            break
        await asyncio.sleep(0.1)
    assert not left, f"{len(left)} of {len(forgotten)} outcomes still kept after 10 s"
    assert await kept(switch, [other]) == [other]
    switch.forget(other)


async def test_closing_the_backend_forgets_what_it_gathered(
        lab_config: Config, switch: AsteriskBackend, observer: Manager) -> None:
    call_id = str(uuid.uuid4())
    await keep(observer, [call_id])
    closing = AsteriskBackend(lab_config.asterisk)
    await closing.connect()
    closing.forget(call_id)
    await closing.close()  # before the batching delay is up
    for _ in range(50):
        if not await kept(switch, [call_id]):
            return
        await asyncio.sleep(0.1)
    pytest.fail("the outcome of a call forgotten just before close was kept")
