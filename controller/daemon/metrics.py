"""Prometheus metrics of one daemon (served at /metrics)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from controller.store import WebhookDelivery

SETUP_BUCKETS = (0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 120)
# What retention deletes (controller.daemon.retention).
PRUNED_KINDS = ("calls", "deliveries", "recordings", "whispers")
LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
               0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
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
        self.switch_reconnects = Gauge("callconnect_switch_reconnects",
                                       "Times the switch connection was re-established",
                                       registry=self.registry)
        self.pruned = Counter("callconnect_pruned", "Things retention deleted, by kind", ["kind"],
                              registry=self.registry)
        for kind in PRUNED_KINDS:
            self.pruned.labels(kind)

    def count_reconnects(self, read: Callable[[], int]) -> None:
        self.switch_reconnects.set_function(lambda: float(read()))

    def webhook_attempted(self, delivery: WebhookDelivery) -> None:
        self.webhooks.labels(str(delivery.state)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
