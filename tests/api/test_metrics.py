"""/metrics of the real daemon process (its switch unreachable, so no lab),
read with Prometheus' own text parser: every labelled series is there at 0
from the start, the switch's reconnects are a counter, build_info names the
version and the backend, and the outbox backlog is what the store holds."""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from controller.core.outcomes import CallStatus
from controller.store import DeliveryState
from controller.store.sqlite import SqliteStore
from tests.api.switch_down import serving, switch_down_env
from tests.lab.conftest import DaemonProcess
from tests.unit.store.builders import make_call, make_delivery

OLDEST_AGE = 600.0


async def fill_store(path: Path) -> None:
    """A call whose webhooks wait: two pending (their next try an hour away,
    so the outbox leaves them be), one delivered."""
    now = time.time()
    store = SqliteStore(str(path))
    await store.open()
    try:
        call = make_call("c1", now - OLDEST_AGE, state="ended", status="completed")
        await store.create_call(call)
        delivered = make_delivery("evt_done", "c1", created_at=now - 2 * OLDEST_AGE)
        delivered.state = DeliveryState.DELIVERED
        await store.save_call(call, [], [
            make_delivery("evt_old", "c1", created_at=now - OLDEST_AGE, next_attempt_at=now + 3600),
            make_delivery("evt_new", "c1", created_at=now - 10, next_attempt_at=now + 3600),
            delivered,
        ])
    finally:
        await store.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp: Path = tmp_path_factory.mktemp("metrics")
    asyncio.run(fill_store(tmp / "store.sqlite3"))
    process = DaemonProcess(tmp / "store.sqlite3", tmp / "daemon.log", switch_down_env(tmp))
    process.start()
    serving(process)
    yield process
    process.stop()


def scrape(daemon: DaemonProcess) -> dict[str, list[Sample]]:
    response = httpx.get(f"{daemon.url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return {family.name + ":" + family.type: family.samples
            for family in text_string_to_metric_families(response.text)}


def values(samples: list[Sample], name: str, label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for s in samples if s.name == name}


def test_switch_reconnects_is_a_counter_and_the_link_a_gauge(daemon: DaemonProcess) -> None:
    families = scrape(daemon)
    assert "callconnect_switch_reconnects:gauge" not in families
    [reconnects] = families["callconnect_switch_reconnects:counter"]
    assert (reconnects.name, reconnects.value) == ("callconnect_switch_reconnects_total", 0.0)
    [connected] = families["callconnect_switch_connected:gauge"]
    assert connected.value == 0.0  # nothing listens on the switch's port


def test_build_info_names_the_version_and_the_backend(daemon: DaemonProcess) -> None:
    [info] = scrape(daemon)["callconnect_build_info:gauge"]  # the text format has no info type
    assert info.name == "callconnect_build_info" and info.value == 1.0
    assert info.labels == {"version": importlib.metadata.version("callconnect"),
                           "backend": "asterisk"}


def test_labelled_series_are_there_at_zero_from_the_start(daemon: DaemonProcess) -> None:
    families = scrape(daemon)
    calls = values(families["callconnect_calls:counter"], "callconnect_calls_total", "status")
    assert calls == {str(status): 0.0 for status in CallStatus}
    deliveries = values(families["callconnect_webhook_deliveries:counter"],
                        "callconnect_webhook_deliveries_total", "outcome")
    assert deliveries == {str(state): 0.0 for state in DeliveryState}
    setups = values(families["callconnect_leg_setup_seconds:histogram"],
                    "callconnect_leg_setup_seconds_count", "leg")
    assert setups == {"a": 0.0, "b": 0.0}


def test_the_outbox_backlog_is_read_from_the_store(daemon: DaemonProcess) -> None:
    families = scrape(daemon)
    [pending] = families["callconnect_webhook_pending_deliveries:gauge"]
    assert pending.value == 2.0  # the delivered one is not counted
    [age] = families["callconnect_webhook_oldest_pending_age_seconds:gauge"]
    assert OLDEST_AGE <= age.value < OLDEST_AGE + 300, age.value
    later = scrape(daemon)["callconnect_webhook_oldest_pending_age_seconds:gauge"][0]
    assert later.value >= age.value  # worked out at each scrape, so it grows
