"""Prometheus metrics. Labels come from small fixed sets: never a phone number or an id."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from gateway.models import Status

disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)

SENDS = Counter(
    "tidings_sends_total",
    "Send attempts by channel, provider and outcome (sent, retry, rejected).",
    ["channel", "provider", "outcome"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "tidings_retries_total",
    "Attempts that will be tried again (transient provider trouble), by channel and provider.",
    ["channel", "provider"],
    registry=REGISTRY,
)
RECEIPTS = Counter(
    "tidings_receipts_total",
    "Delivery receipts by channel, provider and final status (delivered, undelivered).",
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
RECEIPT_SECONDS = Histogram(
    "tidings_receipt_latency_seconds",
    "Time from accepting a notification to its delivery receipt.",
    ["channel", "provider"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
    registry=REGISTRY,
)
VERIFICATIONS = Counter(
    "tidings_verifications_total",
    "Verification codes by channel and outcome: sent, rate_limited, block_limited, tenant_limited, "
    "refused (the send was rejected or suppressed), approved, wrong, max_attempts, expired",
    ["channel", "outcome"],
    registry=REGISTRY,
)
PROVIDER_LIMITED = Counter(
    "tidings_provider_limited_total",
    "Messages over a provider's own limit (per number, signature, template), checked before the call: "
    "held (wait) or failed (fail)",
    ["channel", "then"],
    registry=REGISTRY,
)
DEAD_LETTERED = Counter(
    "tidings_dead_lettered_total",
    "Notifications moved to the dead-letter list after exhausting retries.",
    ["channel"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "tidings_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: delivered, retry, rejected (4xx), gone (410), exhausted, dropped",
    ["outcome"],
    registry=REGISTRY,
)
WEBHOOK_SECONDS = Histogram(
    "tidings_webhook_delivery_seconds",
    "Time from a webhook POST to its endpoint's answer",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
LINK_CLICKS = Counter(
    "tidings_link_clicks_total",
    "Requests to tracked links by kind: counted (a person), repeat (the same link again within seconds), "
    "bot (a link-preview or scanner user agent), head (HEAD requests), unknown (no such code).",
    ["kind"],
    registry=REGISTRY,
)
CONVERSIONS = Counter(
    "tidings_conversions_total",
    "Conversions recorded, by how they were attributed: notification, code, campaign.",
    ["attributed_by"],
    registry=REGISTRY,
)
COMPLAINTS = Counter(
    "tidings_complaints_total",
    "Complaints recorded, by source: carrier, 12321, customer_service.",
    ["source"],
    registry=REGISTRY,
)
SERIES_STARTED = Counter(
    "tidings_series_started_total",
    "Reminder series started, by definition.",
    ["definition"],
    registry=REGISTRY,
)
SERIES_ENDED = Counter(
    "tidings_series_ended_total",
    "Reminder series ended, by outcome: completed, exited (the member's exit event), cancelled.",
    ["outcome"],
    registry=REGISTRY,
)
SERIES_STEPS = Counter(
    "tidings_series_steps_total",
    "Series steps by outcome: sent (became a notification), suppressed, skipped, cancelled.",
    ["outcome"],
    registry=REGISTRY,
)
WECHAT_GRANTS = Counter(
    "tidings_wechat_grants_total",
    "WeChat one-time grants: recorded, spent by a send, missing (no_wechat_grant), revoked (a 43101"
    " emptied a balance). No openid or member in the labels.",
    ["outcome"],
    registry=REGISTRY,
)
for _outcome in ("recorded", "spent", "missing", "revoked"):
    WECHAT_GRANTS.labels(_outcome)
OPTOUTS = Counter(
    "tidings_optouts_total",
    "Opt-outs recorded, by source (sms_reply, api, import, email_link, complaint).",
    ["source"],
    registry=REGISTRY,
)
OPTOUT_REPLICATION_WAITS = Counter(
    "tidings_optout_replication_waits_total",
    "Opt-out writes by how their replication wait ended: replicated (a replica acknowledged), timed_out"
    " (none within TIDINGS_OPTOUT_WAIT_MS: answered 503), no_replicas (the master has none: no wait).",
    ["outcome"],
    registry=REGISTRY,
)


# Fixed label sets, created at zero so rates start from the first event.
for _kind in ("counted", "repeat", "bot", "head", "unknown"):
    LINK_CLICKS.labels(_kind)
for _by in ("notification", "code", "campaign"):
    CONVERSIONS.labels(_by)
for _source in ("carrier", "12321", "customer_service"):
    COMPLAINTS.labels(_source)
for _outcome in ("replicated", "timed_out", "no_replicas"):
    OPTOUT_REPLICATION_WAITS.labels(_outcome)


def prime(routes: dict[str, list[str]]) -> None:
    """Create the main series at zero for every channel and provider of the routes.

    A counter that first appears already above zero hides its first increments from rate() and
    increase(); created at start-up, delivered and sent series also share their scrape timestamps,
    so the delivery-rate ratio is exact.
    """
    for channel, providers in routes.items():
        for provider in providers:
            for outcome in ("sent", "retry", "rejected"):
                SENDS.labels(channel, provider, outcome)
            RETRIES.labels(channel, provider)
            for status in (Status.DELIVERED, Status.UNDELIVERED):
                RECEIPTS.labels(channel, provider, status)
        DEAD_LETTERED.labels(channel)
    for source in ("sms_reply", "api", "import", "email_link", "complaint"):
        OPTOUTS.labels(source)


class FastCounter(Collector):
    """A labelled counter for hot paths: a dict increment now, a Prometheus family at scrape time.

    prometheus_client's Counter takes a lock per increment; these counters are only ever
    incremented from one event loop (or under the GIL), where a dict update is atomic enough.
    """

    def __init__(self, name: str, documentation: str, labels: list[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.values: dict[tuple[str, ...], float] = {}
        # Sets of label tuples that are always counted together (the decisions of one accept):
        # one dict increment per set, spread over its label tuples at scrape time.
        self.grouped: dict[tuple[tuple[tuple[str | None, ...], ...], ...], float] = {}
        registry.register(self)

    def inc(self, *labels: str) -> None:
        """Add one for these label values."""
        self.values[labels] = self.values.get(labels, 0.0) + 1.0

    def inc_each(self, *groups: tuple[tuple[str | None, ...], ...]) -> None:
        """Add one for every label tuple in the groups; a tuple may carry extra values after the labels."""
        self.grouped[groups] = self.grouped.get(groups, 0.0) + 1.0

    def totals(self) -> dict[tuple[str, ...], float]:
        """Every sample: single increments plus the grouped ones spread out."""
        out = dict(self.values)
        width = len(self.labels)
        for groups, count in list(self.grouped.items()):
            for group in groups:
                for labels in group:
                    key = tuple(str(v) for v in labels[:width])
                    out[key] = out.get(key, 0.0) + count
        return out

    def collect(self) -> Iterable[CounterMetricFamily]:
        """The family with every sample seen so far."""
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in sorted(self.totals().items()):
            family.add_metric(list(labels), value)
        yield family

    def get(self, *labels: str) -> float:
        """The current value (tests)."""
        return self.totals().get(labels, 0.0)


# The metric families are named without "_total": prometheus_client adds it to counters.
NOTIFICATIONS_BY = FastCounter(
    "tidings_notifications",
    "Notifications by channel and the status they reached.",
    ["channel", "status"],
    REGISTRY,
)
ACCEPTED = FastCounter(
    "tidings_notifications_accepted",
    "Notify requests answered, by channel, category and status (queued, scheduled, suppressed, rejected).",
    ["channel", "category", "status"],
    REGISTRY,
)
DECISIONS_BY = FastCounter(
    "tidings_compliance_decisions",
    "Compliance decisions by rule and outcome (pass, warn, reject, defer, suppress).",
    ["rule", "outcome"],
    REGISTRY,
)

FAILOVERS = Counter(
    "tidings_provider_failovers",
    "Messages handed to the next provider of the route after a transient failure or an open circuit.",
    ["channel", "provider"],
    registry=REGISTRY,
)
RATE_WAIT_SECONDS = Counter(
    "tidings_provider_rate_wait_seconds",
    "Seconds sends waited for their provider's rate limit.",
    ["provider"],
    registry=REGISTRY,
)
