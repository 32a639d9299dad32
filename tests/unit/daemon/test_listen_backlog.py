"""The API's listen backlog and connection cap under an open-file limit: the
backlog grows with the limit (a quarter of it, 64 to 1,024), and the
connections, the backlog and the daemon's other files always fit in it."""

from __future__ import annotations

import pytest

from controller.daemon.http_server import OTHER_FILES, connection_cap, listen_backlog
from controller.errors import ConfigError


@pytest.mark.parametrize(("open_files", "backlog", "connections"), [
    (208, 64, 16), (512, 128, 256), (1024, 256, 640), (4096, 1024, 1000), (1_048_576, 1024, 1000),
])
def test_the_backlog_and_the_connections_fit_the_open_file_limit(
        open_files: int, backlog: int, connections: int) -> None:
    assert listen_backlog(open_files) == backlog
    assert connection_cap(1000, open_files) == connections
    assert backlog + connections + OTHER_FILES <= open_files


def test_a_limit_with_no_room_for_connections_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"raise it to at least 208"):
        connection_cap(1000, 207)
