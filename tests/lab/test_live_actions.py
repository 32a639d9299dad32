"""Actions on live calls through the daemon on the lab's Asterisk (the tests
are in live_actions.py, shared with the FreeSWITCH lab)."""

import pytest

from tests.lab.live_actions import LiveActionTests

pytestmark = pytest.mark.lab


class TestLiveActionsOnAsterisk(LiveActionTests):
    """Through the Asterisk lab's daemon (sip-lab/callconnect.toml)."""
