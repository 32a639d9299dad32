"""Inbound calls through the daemon on the lab's real FreeSWITCH: the same
tests as on Asterisk (tests/lab/live_calls.py), the caller phone dialing in
to sip:NUMBER@127.0.0.1:5080, parked by the inbound dialplan
(dialplans/freeswitch/callconnect_inbound.xml) for the daemon to claim."""

import pytest

from tests.lab.live_calls import LiveCallTests

pytestmark = pytest.mark.fslab


class TestInboundCallsOnFreeswitch(LiveCallTests):
    """Through the FreeSWITCH lab's daemon (sip-lab/callconnect-freeswitch.toml)."""
