"""Prometheus metrics. Labels come from small fixed sets: never a phone number or an id."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)

NOTIFICATIONS = Counter(
    "tidings_notifications_total",
    "Notifications by channel and the status they reached.",
    ["channel", "status"],
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "tidings_deliveries_total",
    "Send attempts by channel, provider and outcome (sent, retry, rejected).",
    ["channel", "provider", "outcome"],
    registry=REGISTRY,
)
RECEIPTS = Counter(
    "tidings_receipts_total",
    "Delivery receipts by channel, provider and final status.",
    ["channel", "provider", "status"],
    registry=REGISTRY,
)
SEND_SECONDS = Histogram(
    "tidings_send_duration_seconds",
    "Time a provider took to answer one send.",
    ["channel", "provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
DEAD_LETTERED = Counter(
    "tidings_dead_lettered_total",
    "Notifications moved to the dead-letter list after exhausting retries.",
    ["channel"],
    registry=REGISTRY,
)


DECISIONS = Counter(
    "tidings_compliance_decisions_total",
    "Compliance decisions by rule and outcome (pass, warn, reject, defer, suppress).",
    ["rule", "outcome"],
    registry=REGISTRY,
)


class QueueCollector(Collector):
    """Queue depth read from Redis at scrape time, so every replica reports the same truth."""

    def __init__(self, depth: object) -> None:
        self._depth = depth  # callable returning {queue: depth}

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """One gauge sample per channel queue."""
        family = GaugeMetricFamily(
            "tidings_queue_depth", "Jobs waiting in each channel queue.", labels=["queue"]
        )
        try:
            depths = self._depth()  # type: ignore[operator]
        except Exception:
            depths = {}
        for name, value in sorted(depths.items()):
            family.add_metric([name], float(value))
        yield family


class LabelCache:
    """Children of a labelled metric, cached: ``labels()`` costs microseconds on a hot path."""

    def __init__(self, metric: Counter) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Counter] = {}

    def inc(self, *labels: str) -> None:
        """Increment the child for these label values."""
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self.metric.labels(*labels)
        child.inc()


NOTIFICATIONS_BY = LabelCache(NOTIFICATIONS)
DECISIONS_BY = LabelCache(DECISIONS)
