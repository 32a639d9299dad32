"""Prometheus metrics of one daemon (served at /metrics).

Every labelled series is there from the start, at 0, for each value its label
can take, so a rate or an alert does not wait for the first event of a kind.
The outbox's backlog is read from the store at each scrape (see
:meth:`Metrics.observe_backlog`)."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.backends.base import Backend
from controller.core.outcomes import CallStatus, Leg
from controller.store import DeliveryBacklog, DeliveryState, WebhookDelivery

SETUP_BUCKETS = (0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 120)
# What retention deletes (controller.daemon.retention).
PRUNED_KINDS = ("calls", "deliveries", "recordings", "whispers")
# Up to 30 s: a switch past what its host carries delivers events seconds
# late, and a p99 past the last bound reads as +Inf, which says not how late.
LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
               0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, backend_name: str) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter("callconnect_calls", "Calls ended, by final status", ["status"],
                             registry=self.registry)
        self.active_calls = Gauge("callconnect_active_calls", "Calls in progress",
                                  registry=self.registry)
        self.leg_setup = Histogram(
            "callconnect_leg_setup_seconds", "From dialing a leg to its answer", ["leg"],
            buckets=SETUP_BUCKETS, registry=self.registry)
        self.webhooks = Counter("callconnect_webhook_deliveries",
                                "Webhook delivery attempts, by outcome", ["outcome"],
                                registry=self.registry)
        self.event_lag = Histogram(
            "callconnect_switch_event_lag_seconds",
            "From the switch's event timestamp to the controller handling it",
            buckets=LAG_BUCKETS, registry=self.registry)
        self.pruned = Counter("callconnect_pruned", "Things retention deleted, by kind", ["kind"],
                              registry=self.registry)
        for kind in PRUNED_KINDS:
            self.pruned.labels(kind)
        self.pending_deliveries = Gauge(
            "callconnect_webhook_pending_deliveries",
            "Webhook deliveries not yet delivered, failed or disabled (as of the last scrape)",
            registry=self.registry)
        self.oldest_pending_age = Gauge(
            "callconnect_webhook_oldest_pending_age_seconds",
            "Age of the oldest pending webhook delivery; 0 when none is pending",
            registry=self.registry)
        Info("callconnect_build", "The daemon's version and switch backend",
             registry=self.registry).info({"version": installed_version(),
                                           "backend": backend_name})
        for status in CallStatus:
            self.calls.labels(str(status))
        for leg in Leg:
            self.leg_setup.labels(str(leg))
        for state in DeliveryState:
            self.webhooks.labels(str(state))

    def follow_switch(self, backend: Backend) -> None:
        """Read the switch link's state and reconnects from the backend at each scrape."""
        self.registry.register(SwitchCollector(backend))

    def webhook_attempted(self, delivery: WebhookDelivery) -> None:
        self.webhooks.labels(str(delivery.state)).inc()

    def observe_backlog(self, backlog: DeliveryBacklog, now: float) -> None:
        self.pending_deliveries.set(backlog.pending)
        oldest = backlog.oldest_created_at
        self.oldest_pending_age.set(0.0 if oldest is None else max(0.0, now - oldest))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class SwitchCollector(Collector):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("callconnect_switch_connected",
                                "1 while the link to the switch is up, else 0",
                                value=1.0 if self.backend.connected else 0.0)
        yield CounterMetricFamily("callconnect_switch_reconnects",
                                  "Times the switch connection was re-established after a loss",
                                  value=float(self.backend.reconnects))


def installed_version() -> str:
    try:
        return importlib.metadata.version("callconnect")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"  # run from a source tree that was never installed
