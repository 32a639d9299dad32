"""Actions on live calls through the daemon on the lab's real FreeSWITCH: the
same tests as on Asterisk (tests/lab/live_actions.py)."""

import pytest

from tests.lab.live_actions import LiveActionTests

pytestmark = pytest.mark.fslab


class TestLiveActionsOnFreeswitch(LiveActionTests):
    """Through the FreeSWITCH lab's daemon (sip-lab/callconnect-freeswitch.toml)."""
