"""The daemon: one asyncio process holding the switch connection, the HTTP API,
the webhook outbox and the store.

Start-up: open the store, serve the API, tell systemd it is ready (see
:mod:`controller.daemon.systemd`), connect to the switch with backoff (until
then /status answers 503 and says why), pick up the calls a previous run left
open. SIGTERM drains: new calls are refused with 503, calls in progress run to
their end, then it exits.

A part that cannot start or ends unexpectedly (the API's address is taken,
the switch task or the outbox fails) stops the daemon at once, without
draining, and it exits non-zero with the reason (:class:`DaemonFailed`): under
systemd, ``Restart=`` starts it again, and the calls it left open are picked
up then, as after any restart.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from controller import __version__
from controller.actions.spec import ActionsRequest
from controller.api.app import create_app
from controller.api.interface import Hangup, QueuedActions
from controller.api.status.schemas import ComponentStatus, Status
from controller.app import Controller
from controller.backends.base import RECONNECT_DELAYS
from controller.calls.decision import Decision, Refused
from controller.calls.groups import GroupRegistry
from controller.calls.idempotency import bind_key, replay_of
from controller.calls.request import CallRequest
from controller.compliance.dnc import DncEntry
from controller.config import Config
from controller.core.machine import CallConnect
from controller.daemon.admission import Admission, LegLimits
from controller.daemon.http_server import api_server, listen
from controller.daemon.listener import StoreListener
from controller.daemon.metrics import Metrics
from controller.daemon.retention import Retention
from controller.daemon.scheduler import Scheduler
from controller.daemon.systemd import Systemd
from controller.daemon.unreadable import UnreadableCalls
from controller.errors import (
    ConfigError,
    DaemonFailed,
    Draining,
    RateLimited,
    SwitchError,
    UrlDisabled,
)
from controller.inbound.numbers import Number, NumberSettings
from controller.inbound.registry import NumberRegistry
from controller.inbound.service import InboundCalls
from controller.outbound import redact
from controller.recording_links import RecordingLinks
from controller.routing.agents import AgentState
from controller.routing.spec import Group
from controller.store import (
    CallPage,
    DeliveryPage,
    DeliveryState,
    DisabledUrl,
    StoredCall,
    StoreError,
    TimelineEntry,
    WebhookDelivery,
    url_id_of,
)
from controller.store.sqlite import SCHEDULED, SqliteStore
from controller.webhooks.outbox import Outbox

log = structlog.get_logger(__name__)

# A store write that worked is trusted this long by /status: polled often, it
# would otherwise write (and fsync: synchronous=FULL) on every GET.
STORE_CHECK_SECONDS = 5.0


class Daemon:
    """The composition root: builds every part and wires them; to the API it
    is :class:`controller.api.interface.Operations`."""

    def __init__(self, config: Config) -> None:
        if not config.api.tokens:
            raise ConfigError("api.tokens is empty: set at least one API token "
                              "(or CALLCONNECT_API_TOKENS) before starting the daemon",
                              setting="api.tokens")
        self.config = config
        self.metrics = Metrics(config.backend)
        self.store = SqliteStore(config.store.path)
        signing_secret = config.webhook.daemon_signing_secret()
        self.recording_links = RecordingLinks.for_daemon(
            signing_secret, config.api.base_url(), config.api.recording_link_hours * 3600)
        self.outbox = Outbox(self.store, signing_secret,
                             outbound=config.outbound,
                             timeout=config.webhook.timeout,
                             max_age=config.webhook.max_age_hours * 3600,
                             base_delay=config.webhook.retry_base_seconds,
                             concurrency=config.webhook.concurrency,
                             per_host=config.webhook.per_host_concurrency,
                             on_result=self.metrics.webhook_attempted)
        self.listener = StoreListener(config, self.store, self.outbox, self.metrics,
                                      self.recording_links)
        self.groups = GroupRegistry(config.calls.default_region, config.agent_groups(), self.store)
        self.numbers = NumberRegistry(config.calls.default_region, config.outbound,
                                      config.inbound_numbers(), self.store)
        self.controller = Controller(config, self.listener, agents=self.store, records=self.store,
                                     groups=self.groups)
        self.calls = self.controller.calls
        self.calls.limits = LegLimits(config.limits, self.controller.backend.trunk_of,
                                      self.calls.calls)
        self.scheduler = Scheduler(config, self.store, self.calls, self.outbox,
                                   self.metrics, self._scheduled_call_wait)
        self.calls.scheduling = self.scheduler
        self.controller.backend.observe_event_lag = self.metrics.event_lag.observe
        self.inbound = InboundCalls(config, self.numbers, self.controller.backend,
                                    self.controller.renderer, self.calls.live.preparer, self.calls,
                                    self.calls.live.fetcher, self._inbound_refusal)
        self.retention = Retention(config.retention, Path(config.media.recording_dir), self.store,
                                   self.controller.renderer, self.metrics, self.calls.calls.keys)
        self.unreadable = UnreadableCalls(config, self.store, self.controller.backend,
                                          self.outbox, self.metrics)
        self.admission = Admission(config.api.max_calls_per_second, config.api.max_active_calls)
        self.draining = False
        self.switch_reason = "not connected yet"
        self._store_ok_until = 0.0
        self._stop = asyncio.Event()
        self.failure: DaemonFailed | None = None
        self.systemd = Systemd()
        self.metrics.follow_switch(self.controller.backend)

    @property
    def switch_connected(self) -> bool:
        return self.controller.backend.connected

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT; DaemonFailed if a part failed."""
        await self.store.open()
        try:
            await self._serve()
        finally:
            await self.store.close()  # its thread would keep the process alive
        if self.failure is not None:
            raise self.failure
        log.info("daemon.stopped")

    async def _serve(self) -> None:
        await self.groups.load()
        await self.numbers.load()
        self.inbound.attach()  # numbers known: calls may arrive once the switch is connected
        api = self.config.api
        server = api_server(create_app(self, api), api)
        sockets = listen(api, server.config.backlog)
        server.on_serving = self._serving
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        log.info("daemon.starting", api=f"{api.host}:{api.port}", store=self.config.store.path,
                 backend=self.config.backend)
        tasks = [self._part("api", server.serve(sockets)),
                 self._part("outbox", self.outbox.run()),
                 self._part("switch", self._follow_switch(), ends=True),
                 self._part("scheduler", self.scheduler.run()),
                 self._part("retention", self.retention.run()),
                 asyncio.create_task(self.systemd.keep_alive(), name="watchdog")]
        await self._stop.wait()
        if self.failure is None:
            await self._drain()
        else:
            self.systemd.stopping()
        server.should_exit = True
        await self.inbound.stop()
        await self.outbox.stop()
        for task in tasks[2:]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.controller.stop()
        await self.listener.flush()

    def _part(self, name: str, work: Coroutine[Any, Any, None],
              ends: bool = False) -> asyncio.Task[None]:
        """Run one part of the daemon as a task. If it fails, the daemon stops
        with the reason; likewise if it ends before the daemon stops, unless
        it is one that ``ends`` when its work is done."""
        async def watched() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except (Exception, SystemExit) as exc:  # uvicorn exits by SystemExit
                log.exception("daemon.part_failed", part=name)
                self._fail(name, f"{type(exc).__name__}: {exc}")
                return
            if not ends and not self._stop.is_set():
                self._fail(name, "it ended on its own")
        return asyncio.create_task(watched(), name=name)

    def _fail(self, part: str, reason: str) -> None:
        if self.failure is None:
            hint = (f"; check the [{self.config.backend}] settings" if part == "switch" else "")
            self.failure = DaemonFailed(f"the daemon's {part} task failed ({reason}){hint}; "
                                        "the daemon stops", part=part, reason=reason)
        self._stop.set()

    def _serving(self) -> None:
        # What start-up built (the app and its schemas, number metadata, the
        # modules) lives as long as the daemon. Frozen, it is out of the
        # collector's reach: a full collection then scans the calls' objects
        # alone, not a pause of tens of ms for every request in flight.
        gc.collect()
        gc.freeze()
        address = f"{self.config.api.host}:{self.config.api.port}"
        self.systemd.ready(f"serving the API on {address}; the switch's state is at /status")
        log.info("daemon.ready", api=address, switch_connected=self.switch_connected)

    async def _drain(self) -> None:
        self.draining = True
        self.systemd.stopping()
        calls = list(self.calls.calls.values())
        log.info("daemon.draining", active_calls=len(calls))
        if calls:
            await asyncio.gather(*(call.wait() for call in calls), return_exceptions=True)

    async def _follow_switch(self) -> None:
        """Connect with backoff, for as long as it takes; once connected, pick
        up open calls. From then on the backend reconnects by itself (and
        looks at live calls again); /status only needs the reason."""
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
        log.info("daemon.switch_connected")

    async def _reconcile(self) -> None:
        """Calls a previous run left open: follow the live ones again, close
        the ones that ended meanwhile with what the switch kept. One that
        cannot be read back is closed as failed (:mod:`.unreadable`): it
        never keeps the daemon, nor the others, from starting."""
        open_calls: list[tuple[StoredCall, CallConnect, CallRequest]] = []
        for stored in await self.store.open_calls():
            read = await self.unreadable.read_back(stored)
            if read is not None:
                open_calls.append((stored, *read))
        for stored, core, _ in open_calls:
            # Every call holds its agents again before any of them routes again.
            self.calls.reservations.follow(stored.call_id, core)
        for stored, core, request in open_calls:
            try:
                await self.calls.resume(core, request, stored.idempotency_key)
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
        components["store"] = await self._check_store()
        if unsaved:  # a call's failed write shows at once, whatever the check says
            error = next(iter(unsaved.values())).error
            components["store"] = ComponentStatus(status="fail", reason=(
                f"changes of {len(unsaved)} call(s) wait to be written: {error.message}"))
        components["webhooks"] = (ComponentStatus(status="ok") if self.outbox.running
                                  else ComponentStatus(status="fail", reason="outbox not running"))
        ok = all(c.status == "ok" for c in components.values())
        return Status(status="ok" if ok else "fail", version=__version__, draining=self.draining,
                      active_calls=len(self.calls.calls), components=components)

    async def _check_store(self) -> ComponentStatus:
        if time.monotonic() < self._store_ok_until:
            return ComponentStatus(status="ok")
        try:
            await self.store.ping()
        except StoreError as exc:  # not cached: the next GET writes again
            return ComponentStatus(status="fail", reason=exc.message)
        self._store_ok_until = time.monotonic() + STORE_CHECK_SECONDS
        return ComponentStatus(status="ok")

    # ------------------------------------------------------------ the API's operations

    def store_failed(self) -> None:
        self._store_ok_until = 0.0

    @property
    def api_tokens(self) -> Sequence[str]:
        return self.config.api.tokens

    async def place_call(self, request: CallRequest, idempotency_key: str | None,
                         token: str) -> Decision:
        key = bind_key(idempotency_key, token, request) if idempotency_key else None
        if key is not None:
            existing = await self.store.get_call_by_idempotency_key(key)
            if existing is not None:
                return replay_of(existing, key)
        if self.draining:
            return Refused(Draining())
        wait = self.admission.admit(len(self.calls.calls))
        if wait is not None:
            return Refused(RateLimited(wait))
        return await self.calls.place(request, key)

    async def list_calls(self, *, status: str | None, created_after: float | None,
                         created_before: float | None, limit: int,
                         cursor: str | None) -> CallPage:
        return await self.store.list_calls(status=status, created_after=created_after,
                                           created_before=created_before, limit=limit,
                                           cursor=cursor)

    async def get_call(self, call_id: str) -> StoredCall | None:
        return await self.store.get_call(call_id)

    async def timeline(self, call_id: str) -> list[TimelineEntry]:
        return await self.store.timeline(call_id)

    async def hang_up(self, call_id: str) -> Hangup | None:
        stored = await self.store.get_call(call_id)
        if stored is None:
            return None
        if stored.state == SCHEDULED and await self.scheduler.cancel(stored):
            return Hangup(await self.store.get_call(call_id) or stored)
        if call_id not in self.calls.calls:
            return Hangup(stored, already_ended=True)
        await self.calls.hangup(call_id, "api")
        return Hangup(stored)

    async def queue_actions(self, call_id: str, request: ActionsRequest) -> QueuedActions | None:
        stored = await self.store.get_call(call_id)
        if stored is None:
            return None
        queued = await self.calls.queue_actions(call_id, request.actions, request.replace)
        if queued is None:  # ended, or not placed yet (scheduled)
            return QueuedActions(ended=True, status=stored.status)
        return QueuedActions(tuple((action.id, action.type) for action in queued))

    def agent_groups(self) -> Mapping[str, Group]:
        return self.groups

    async def agent_states(self, agents: Sequence[str]) -> Mapping[str, AgentState]:
        return await self.store.agent_states(agents)

    async def put_group(self, name: str, data: dict[str, Any]) -> Group:
        return await self.groups.put(name, data)

    async def delete_group(self, name: str) -> bool:
        return await self.groups.delete(name)

    def inbound_number(self, text: str) -> str:
        return self.numbers.number(text)

    def get_number(self, number: str) -> Number | None:
        return self.numbers.get(number)

    def list_numbers(self, cursor: str | None, limit: int) -> tuple[list[Number], str | None]:
        return self.numbers.page(cursor, limit)

    async def put_number(self, number: str, settings: NumberSettings) -> Number:
        return await self.numbers.put(number, settings)

    async def delete_number(self, number: str) -> bool:
        return await self.numbers.delete(number)

    def dnc_number(self, text: str) -> str:
        return self.calls.compliance.number(text)

    async def dnc_entry(self, number: str) -> DncEntry | None:
        return await self.calls.compliance.dnc_entry(number)

    async def add_dnc(self, number: str, reason: str) -> DncEntry:
        return await self.calls.compliance.add_dnc(number, reason)

    async def remove_dnc(self, number: str) -> bool:
        return await self.calls.compliance.remove_dnc(number)

    async def list_dnc(self, cursor: str | None, limit: int) -> tuple[list[DncEntry], str | None]:
        return await self.calls.compliance.list_dnc(cursor, limit)

    async def list_deliveries(self, *, call_id: str | None, state: DeliveryState | None, limit: int,
                              cursor: str | None) -> DeliveryPage:
        return await self.store.list_deliveries(call_id=call_id, state=state, limit=limit, cursor=cursor)

    async def redeliver(self, event_id: str) -> WebhookDelivery | None:
        delivery = await self.store.get_delivery(event_id)
        if delivery is None:
            return None
        if await self.store.url_disabled(delivery.url):
            raise UrlDisabled(f"the URL of delivery {event_id} is disabled (it answered 410 Gone); "
                              "re-enable it first: DELETE /v1/webhooks/disabled-urls/{url_id}",
                              event_id=event_id, url_id=url_id_of(delivery.url))
        queued = await self.store.redeliver(event_id, time.time())
        self.outbox.wake()
        log.info("webhook.redeliver", event_id=event_id, call_id=delivery.call_id)
        return queued

    async def disabled_urls(self, limit: int,
                            cursor: str | None) -> tuple[list[DisabledUrl], str | None]:
        return await self.store.disabled_urls(limit=limit, cursor=cursor)

    async def enable_url(self, url_id: str, redeliver: bool) -> tuple[DisabledUrl, int] | None:
        enabled = await self.store.enable_url(url_id, time.time() if redeliver else None)
        if enabled is not None:
            log.info("webhook.url_enabled", url=redact(enabled[0].url), redelivered=enabled[1])
            if enabled[1]:
                self.outbox.wake()
        return enabled

    async def metrics_text(self) -> bytes:
        try:
            backlog = await self.store.delivery_backlog()
        except StoreError as exc:  # the rest is still worth serving
            self.store_failed()
            log.warning("metrics.backlog_unreadable", error=exc.message)
        else:
            self.metrics.observe_backlog(backlog, time.time())
        return self.metrics.render()

    def _inbound_refusal(self) -> str | None:
        """Why an arriving call cannot be taken now (None: it can): the
        daemon-wide limits, as for a call placed over the API."""
        if self.draining:
            return "the daemon is draining"
        wait = self.admission.admit(len(self.calls.calls))
        return None if wait is None else f"over the daemon's call limits (retry in {wait:.1f} s)"

    def _scheduled_call_wait(self) -> float | None:
        """Seconds before the scheduler may place a due call (None: now):
        never while draining or away from the switch, and within the
        daemon-wide limits, which delay it rather than fail it."""
        if self.draining:
            return 60.0
        if not self.switch_connected:
            return 1.0
        return self.admission.admit(len(self.calls.calls))


async def run_daemon(config: Config) -> None:
    daemon = Daemon(config)
    started = time.monotonic()
    await daemon.run()
    log.info("daemon.exit", ran_seconds=round(time.monotonic() - started))
