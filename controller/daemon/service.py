"""The daemon: one asyncio process holding the switch connection, the HTTP API,
the webhook outbox and the store.

Start-up: open the store, serve the API (it answers 503 until the switch is
reachable), connect to the switch with backoff, pick up the calls a previous
run left open, then tell systemd it is ready. SIGTERM drains: new calls are
refused with 503, calls in progress run to their end, then it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from typing import Any

import sdnotify
import structlog
import uvicorn

from controller import __version__
from controller.api.app import ComponentStatus, Status, create_app
from controller.app import Controller
from controller.backends.base import RECONNECT_DELAYS
from controller.compliance.schedule import Scheduler
from controller.config import Config
from controller.core.machine import CallConnect
from controller.daemon.admission import Admission, LegLimits
from controller.daemon.listener import StoreListener, request_from_dict
from controller.daemon.metrics import Metrics
from controller.errors import ConfigError, GroupFromConfig, InvalidRequest, SwitchError
from controller.routing.spec import Group, parse_group
from controller.store import StoreError
from controller.store.sqlite import SqliteStore
from controller.webhooks.outbox import Outbox

log = structlog.get_logger(__name__)



class ApiServer(uvicorn.Server):
    """uvicorn, minus its own signal handling: the daemon decides when the API
    stops (after draining), not the first SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Daemon:
    def __init__(self, config: Config) -> None:
        if not config.api.tokens:
            raise ConfigError("api.tokens is empty: set at least one API token "
                              "(or CALLCONNECT_API_TOKENS) before starting the daemon",
                              setting="api.tokens")
        self.config = config
        self.metrics = Metrics()
        self.store = SqliteStore(config.store.path)
        self.outbox = Outbox(self.store, config.webhook.signing_secret or None,
                             outbound=config.outbound,
                             timeout=config.webhook.timeout,
                             max_age=config.webhook.max_age_hours * 3600,
                             base_delay=config.webhook.retry_base_seconds,
                             on_result=self.metrics.webhook_attempted)
        self.listener = StoreListener(config, self.store, self.outbox, self.metrics)
        self.controller = Controller(config, self.listener, agents=self.store, records=self.store)
        self.controller.calls.limits = LegLimits(config.limits, self.controller.backend.trunk_of,
                                                 self.controller.calls.calls)
        self.scheduler = Scheduler(config, self.store, self.controller.calls, self.outbox,
                                   self.metrics, self._scheduled_call_wait)
        self.controller.backend.observe_event_lag = self.metrics.event_lag.observe
        self.admission = Admission(config.api.max_calls_per_second, config.api.max_active_calls)
        self.draining = False
        self.switch_reason = "not connected yet"
        self._stop = asyncio.Event()
        self._notifier = sdnotify.SystemdNotifier()
        self.metrics.count_reconnects(lambda: self.controller.backend.reconnects)

    @property
    def switch_connected(self) -> bool:
        return self.controller.backend.connected

    async def run(self) -> None:
        await self.store.open()
        await self._load_groups()
        server = ApiServer(uvicorn.Config(
            create_app(self), host=self.config.api.host, port=self.config.api.port,
            log_config=None, access_log=False, lifespan="off"))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        tasks = [asyncio.create_task(server.serve(), name="api"),
                 asyncio.create_task(self.outbox.run(), name="outbox"),
                 asyncio.create_task(self._follow_switch(), name="switch"),
                 asyncio.create_task(self.scheduler.run(), name="scheduler")]
        log.info("daemon.starting", api=f"{self.config.api.host}:{self.config.api.port}",
                 store=self.config.store.path, backend=self.config.backend)
        await self._stop.wait()
        await self._drain()
        server.should_exit = True
        await self.outbox.stop()
        for task in tasks[2:]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.controller.stop()
        await self.listener.flush()
        await self.store.close()
        log.info("daemon.stopped")

    async def _load_groups(self) -> None:
        groups = self.controller.calls.groups
        for name, data in (await self.store.list_groups()).items():
            try:
                groups[name] = self._parse_group(name, data)
            except InvalidRequest as exc:
                log.error("group.invalid_in_store", group=name, error=exc.message)

    def _parse_group(self, name: str, data: dict[str, Any]) -> Group:
        groups = self.controller.calls.groups
        return parse_group(name, data, self.config.calls.default_region,
                           lambda other: other in groups or other == name)

    async def put_group(self, name: str, data: dict[str, Any]) -> Group:
        """Create or replace a group made over the API; InvalidRequest if bad."""
        existing = self.controller.calls.groups.get(name)
        if existing is not None and existing.source == "config":
            raise GroupFromConfig(f"group {name} comes from the config file; change it there",
                                  group=name)
        group = self._parse_group(name, data)
        await self.store.put_group(name, data)
        self.controller.calls.groups[name] = group
        log.info("group.saved", group=name, strategy=str(group.strategy), agents=len(group.agents))
        return group

    async def delete_group(self, name: str) -> bool:
        existing = self.controller.calls.groups.get(name)
        if existing is None:
            return False
        if existing.source == "config":
            raise GroupFromConfig(f"group {name} comes from the config file; remove it there",
                                  group=name)
        await self.store.delete_group(name)
        del self.controller.calls.groups[name]
        log.info("group.deleted", group=name)
        return True

    async def _drain(self) -> None:
        self.draining = True
        self._notifier.notify("STOPPING=1")
        calls = list(self.controller.calls.calls.values())
        log.info("daemon.draining", active_calls=len(calls))
        if calls:
            await asyncio.gather(*(call.wait() for call in calls), return_exceptions=True)

    async def _follow_switch(self) -> None:
        """Connect with backoff; once connected, pick up open calls and tell
        systemd we are ready. From then on the backend reconnects by itself
        (and looks at live calls again); /status only needs the reason."""
        attempt = 0
        while True:
            try:
                await self.controller.start()
                break
            except SwitchError as exc:
                self.switch_reason = exc.message
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                log.warning("daemon.switch_unreachable", error=exc.message, retry_in=delay)
                attempt += 1
                await asyncio.sleep(delay)
        self.switch_reason = "connection to the switch lost; reconnecting"
        await self._reconcile()
        self._notifier.notify("READY=1")
        log.info("daemon.ready")

    async def _reconcile(self) -> None:
        """Calls a previous run left open: follow the live ones again, close
        the ones that ended meanwhile with what the switch kept."""
        for stored in await self.store.open_calls():
            core = CallConnect.from_snapshot(stored.snapshot)
            try:
                await self.controller.calls.resume(core, request_from_dict(stored.request))
            except SwitchError as exc:
                log.error("daemon.reconcile_failed", call_id=stored.call_id, error=exc.message)
                continue
            self.metrics.active_calls.inc()

    async def status(self) -> Status:
        components = {
            "switch": ComponentStatus(status="ok") if self.switch_connected
            else ComponentStatus(status="fail", reason=self.switch_reason),
        }
        unsaved = self.listener.unsaved
        try:
            await self.store.ping()
            components["store"] = ComponentStatus(status="ok")
        except StoreError as exc:
            components["store"] = ComponentStatus(status="fail", reason=exc.message)
        if unsaved:
            error = next(iter(unsaved.values())).error
            components["store"] = ComponentStatus(status="fail", reason=(
                f"changes of {len(unsaved)} call(s) wait to be written: {error.message}"))
        components["webhooks"] = (ComponentStatus(status="ok") if self.outbox.running
                                  else ComponentStatus(status="fail", reason="outbox not running"))
        ok = all(c.status == "ok" for c in components.values())
        return Status(status="ok" if ok else "fail", version=__version__, draining=self.draining,
                      active_calls=len(self.controller.calls.calls), components=components)

    def _scheduled_call_wait(self) -> float | None:
        """Seconds before the scheduler may place a due call (None: now):
        never while draining or away from the switch, and within the
        daemon-wide limits, which delay it rather than fail it."""
        if self.draining:
            return 60.0
        if not self.switch_connected:
            return 1.0
        return self.admission.admit(len(self.controller.calls.calls))


async def run_daemon(config: Config) -> None:
    daemon = Daemon(config)
    started = time.monotonic()
    await daemon.run()
    log.info("daemon.exit", ran_seconds=round(time.monotonic() - started))
