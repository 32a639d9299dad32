"""Inbound calls through the daemon on the lab's Asterisk (the tests are in
live_calls.py, shared with the FreeSWITCH lab)."""

import pytest

from tests.lab.live_calls import LiveCallTests

pytestmark = pytest.mark.lab


class TestInboundCallsOnAsterisk(LiveCallTests):
    """A caller phone dials in to sip:NUMBER@127.0.0.1:5060."""
