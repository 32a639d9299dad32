"""Fixtures of the live-call tests through the daemon, shared by both labs'
suites (tests/conftest.py loads them): agent phones, the phone that calls
in, and a URL that answers actions. The switch they run against is the
``lab_switch`` fixture of each lab's conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import Serve
from tests.lab.callers import Caller, call_in
from tests.lab.live_parts import AGENT_PORTS, ActionsUrl, Agent, LabSwitch, StartActionsUrl

CallIn = Callable[..., Caller]


@pytest.fixture
def agents() -> Iterator[Callable[[str], Agent]]:
    """Start agent phones of the test's own (a scenario of sip-lab/phones each)."""
    started: list[Agent] = []

    def start(behaviour: str) -> Agent:
        agent = Agent.start(AGENT_PORTS[len(started)], behaviour)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.finished(timeout=0.1)


@pytest.fixture
def caller_phone(lab_switch: LabSwitch, tmp_path: Path) -> Iterator[CallIn]:
    """Start the phone that calls in to the test's switch (callers.call_in:
    number, caller, steps); stopped at the test's end."""
    started: list[Caller] = []

    def start(number: str, caller: str, steps: tuple[str, ...] = ()) -> Caller:
        phone = call_in(tmp_path, number, caller, steps, lab_switch.sip_address)
        started.append(phone)
        return phone

    yield start
    for phone in started:
        phone.stop()


@pytest.fixture
def actions_url(serve: Serve) -> StartActionsUrl:
    """Start a URL on loopback that answers as told (see ActionsUrl)."""
    async def start(*answers: tuple[int, str, float]) -> ActionsUrl:
        server = ActionsUrl(list(answers) or [(204, "", 0.0)])
        app = web.Application()
        app.router.add_route("*", "/actions", server.handle)
        server.url = f"{await serve(app)}/actions"
        return server

    return start
