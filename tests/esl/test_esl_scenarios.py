"""Every scenario folder in sip-lab/scenarios, placed through the real
Controller with the FreeSWITCH backend against the Event Socket peer.

The scenarios run at the same time on one peer and one controller (the longest
takes about as long as all of them), each asserting its [expect] exactly as
tests/lab/test_scenarios.py does on the Asterisk lab; a scenario with a SIPp
phone of its own gets the peer's phone of the same behaviour. After each call,
the peer has none of that call's channels left.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.app import Controller
from controller.calls.request import CallRequest
from tests.openapi_document import OpenApiDocument
from tests.scenarios import assert_expected, scenario_folders

from .conftest import PASSWORD, channels_gone, esl_config, freeswitch_controller
from .peer import EslPeer, scenario_call

CALL_TIMEOUT = 60.0


@dataclass
class Outcome:
    result: dict[str, Any]
    channels_left: list[str]


async def _prerender(controller: Controller, folders: list[Path]) -> None:
    """Render every text once before the calls start at the same time:
    WhisperRenderer names its temporary file after the process and the text,
    so two renders of one text at once in one process collide."""
    texts = {controller.config.whisper.b_unreached_message}
    texts |= {scenario_call(f)["whisper"] for f in folders if scenario_call(f).get("whisper")}
    for text in sorted(texts):
        await controller.renderer.render(text)


async def _run(controller: Controller, peer: EslPeer, folder: Path) -> Outcome:
    call = await controller.calls.start(CallRequest(**scenario_call(folder)))
    result = await asyncio.wait_for(call.wait(), CALL_TIMEOUT)
    return Outcome(result, await channels_gone(peer, call.call_id))


@pytest.fixture(scope="module")
async def outcomes(
        tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Outcome | BaseException]]:
    peer = EslPeer(password=PASSWORD)
    await peer.start()
    config = esl_config(tmp_path_factory.mktemp("scenarios"), peer.port)
    try:
        async with freeswitch_controller(config) as controller:
            folders = scenario_folders()
            await _prerender(controller, folders)
            runs = await asyncio.gather(*(_run(controller, peer, f) for f in folders),
                                        return_exceptions=True)
            yield dict(zip((f.name for f in folders), runs, strict=True))
        assert peer.channel_ids() == [], "channels left on the peer after all scenarios"
    finally:
        await peer.stop()


@pytest.mark.parametrize("folder", scenario_folders(), ids=lambda p: p.name)
async def test_scenario(folder: Path, outcomes: dict[str, Outcome | BaseException]) -> None:
    outcome = outcomes[folder.name]
    if isinstance(outcome, BaseException):
        raise outcome
    assert_expected(folder, outcome.result)
    OpenApiDocument().component("CallResult", outcome.result)
    assert outcome.channels_left == [], f"{folder.name}: channels left on the peer"
