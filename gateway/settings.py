"""Settings decoded from ``TIDINGS_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from gateway.errors import SettingsError

PREFIX = "TIDINGS_"
# A Redis Cluster URL: redis+cluster://[[user]:password@]host:port[,host:port...]
CLUSTER_SCHEME = "redis+cluster://"

PositiveFloat = Annotated[float, Meta(gt=0)]
PositiveInt = Annotated[int, Meta(ge=1)]


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every knob of the gateway; one field per ``TIDINGS_<NAME>`` variable."""

    # Redis URL (redis://, rediss://, unix://, redis+sentinel://, redis+cluster://host:port[,host:port]).
    # None: start the embedded redis-server.
    redis_url: str | None = None
    # The Redis of rq's queues and scheduled jobs (rq does not support Cluster). None: the state's
    # Redis (redis_url); required when that is a redis+cluster:// URL.
    queue_redis_url: str | None = None
    # The all-scopes key that `tidings dev` makes sure exists.
    api_key: str = "dev-key"
    dev_tenant: str = "default"
    # Where the provider simulator listens and where it posts receipts and replies.
    simulator_url: str = "http://127.0.0.1:8081"
    simulator_secret: str = "dev-simulator-secret"  # noqa: S105 - dev default, set it in production
    public_url: str = "http://127.0.0.1:8080"
    # Where tracked links point (`{link_base}/{code}`, served by the API at /l/{code}); the domain
    # must be one the brand controls (ICP-filed in China). Empty: public_url + "/l".
    link_base: str = ""
    link_ttl_days: Annotated[int, Meta(ge=1, le=3650)] = 90
    # A second click on the same link within this many seconds is a repeat, not another person.
    click_repeat_seconds: Annotated[float, Meta(ge=0, le=3600)] = 30.0
    # A conversion given as member + campaign goes to the member's latest delivered message of the
    # campaign within this many days; a complaint opts the member out of that brand unless turned off.
    attribution_days: Annotated[float, Meta(gt=0, le=90)] = 7.0
    complaint_opts_out: bool = True
    # Where the Redis master has replicas, an opt-out is acknowledged only once one holds it
    # (WAIT 1 <ms>); none in time: 503 with Retry-After. 0: never wait. No replicas: no wait.
    optout_wait_ms: Annotated[int, Meta(ge=0, le=5000)] = 500
    # Providers' webhook secrets. Twilio signs with the account's auth token; Alibaba's HTTP push has
    # no signature, so its push URL carries ?tenant=...&token=... with this shared token.
    twilio_auth_token: str = "dev-twilio-auth-token"  # noqa: S105 - dev default
    # WeChat signs its message pushes (delivery receipts) with the Token of the mini program's
    # message push settings (消息推送 → Token).
    wechat_push_token: str = "dev-wechat-push-token"  # noqa: S105 - dev default
    inbound_token: str = "dev-inbound-token"  # noqa: S105 - dev default
    # Compliance policy TOML (None: the shipped compliance/data/policy.toml).
    policy_path: str | None = None
    # Providers and routes TOML (channels/config.py). None: the simulator carries every channel.
    providers_path: str | None = None
    # Key of the HMAC that turns addresses into member keys (opt-outs, caps, audit lookups).
    hmac_key: Annotated[str, Meta(min_length=8)] = "dev-hmac-key-change-me"
    default_region: Annotated[str, Meta(pattern="^[A-Z]{2}$")] = "CN"
    # Delivery.
    # Ids a delivery job carries at most (a campaign's jobs are full; a quiet tenant's hold what is
    # ready). rq's own bookkeeping is about 4 ms a job, a tenth of a core at 2,500 messages/s in
    # jobs of 100; in jobs of 500 a campaign wave drains about a third faster (docs/performance.md).
    batch_size: Annotated[int, Meta(ge=1, le=1000)] = 500
    send_concurrency: Annotated[int, Meta(ge=1, le=1000)] = 64
    send_timeout_seconds: PositiveFloat = 5.0
    lease_seconds: PositiveFloat = 30.0
    max_attempts: Annotated[int, Meta(ge=1, le=50)] = 10
    retry_base_seconds: PositiveFloat = 2.0
    retry_max_seconds: PositiveFloat = 300.0
    housekeeping_interval_seconds: PositiveFloat = 1.0
    # Limits and retention.
    max_body_bytes: Annotated[int, Meta(ge=1024)] = 2_097_152
    max_batch_items: Annotated[int, Meta(ge=1, le=10_000)] = 1000
    # Held (scheduled) notifications per tenant and channel: past it, notifies that would be held get
    # 429 too_many_scheduled (Redis memory is bounded, not only the queues that drain).
    max_held_per_channel: Annotated[int, Meta(ge=1)] = 5_000_000
    # How far ahead send_at may be (Twilio's scheduling window is 35 days too): further is a 422.
    max_schedule_days: Annotated[int, Meta(ge=1, le=366)] = 35
    idempotency_ttl_seconds: Annotated[int, Meta(ge=86_400)] = 86_400
    record_ttl_seconds: Annotated[int, Meta(ge=3600)] = 7 * 86_400
    api_key_cache_seconds: Annotated[float, Meta(ge=0)] = 5.0
    # Requests per second per API key in each API process (0: no limit), and the burst allowed.
    rate_limit_per_second: Annotated[float, Meta(ge=0)] = 1000.0
    rate_limit_burst: Annotated[int, Meta(ge=1)] = 2000
    # Audit store: sqlite:///relative/path, sqlite:////absolute/path or postgresql://user@host/db.
    # The commands use it only when TIDINGS_AUDIT_URL is set; otherwise the audit log is
    # audit.sqlite3 in the data dir (gateway/cli/locate.py), which is ./var unless told otherwise.
    audit_url: str = "sqlite:///var/audit.sqlite3"
    # The data dir of `tidings dev` (its Redis and audit log), for every command that has no
    # --data-dir (gateway/cli/locate.py: --data-dir, this, the running dev's, ./var).
    data_dir: str | None = None
    # MIIT asks for at least 5 months of send and subscription records.
    audit_retention_days: Annotated[int, Meta(ge=150)] = 183
    # Whether `tidings worker` also runs an audit consumer (one leads at a time; the others stand by).
    audit_consumer: bool = True
    # Webhooks (events out). Endpoints may point inside the network (loopback, private, link-local)
    # only when allowed: `tidings dev` allows it for local receivers; production should not.
    webhook_allow_private: bool = False
    webhook_timeout_seconds: PositiveFloat = 5.0
    # Seconds before each retry of a failed delivery (jittered ±20%); past the last, it fails and the
    # endpoint is disabled. The default spans about a day.
    webhook_retry_seconds: Annotated[str, Meta(pattern=r"^\d+(\.\d+)?(,\d+(\.\d+)?)*$")] = (
        "5,300,1800,7200,18000,36000,36000"
    )
    webhook_lanes: Annotated[int, Meta(ge=1, le=256)] = 8
    webhook_concurrency: Annotated[int, Meta(ge=1, le=1000)] = 64
    # Whether `tidings worker` also runs a webhook dispatcher (one leads at a time).
    webhook_dispatcher: bool = True
    # Whether `tidings worker` also releases due series steps (several may: each takes its own batch),
    # how many steps one round takes, and how often an idle releaser looks.
    series_releaser: bool = True
    series_batch: Annotated[int, Meta(ge=1, le=5000)] = 500
    series_interval_seconds: Annotated[float, Meta(gt=0, le=60)] = 0.5
    # The web console (/console): how long a signed-in session lasts at most, and idle; whether it
    # shows the provider simulator's inbox (`tidings dev` turns it on).
    console_session_hours: Annotated[float, Meta(gt=0, le=24)] = 8.0
    console_idle_minutes: Annotated[float, Meta(gt=0, le=1440)] = 60.0
    console_simulator: bool = False
    # Worker metrics port for `tidings worker` (0: none).
    worker_metrics_port: Annotated[int, Meta(ge=0, le=65535)] = 0
    # Where that port listens (0.0.0.0 in a container, for Prometheus on another host).
    worker_metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"
    # text (one line, key=value ids) or json (one object per line, for log collectors).
    log_format: Literal["text", "json"] = "text"


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from ``TIDINGS_*`` variables; an unknown or malformed one raises SettingsError."""
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {
        name[len(PREFIX) :].lower(): value for name, value in env.items() if name.startswith(PREFIX)
    }
    raw.update(overrides)
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(str(exc))) from None
    if settings.queue_redis_url is not None and settings.queue_redis_url.startswith(CLUSTER_SCHEME):
        raise SettingsError(
            "invalid settings: TIDINGS_QUEUE_REDIS_URL cannot be a redis+cluster:// URL (rq does not support"
            " Redis Cluster); give it a plain Redis or a Sentinel URL"
        )
    if settings.redis_url is not None:
        queue_url(settings, settings.redis_url)
    return settings


def queue_url(settings: Settings, redis_url: str) -> str:
    """The Redis of rq (queues, scheduled jobs): TIDINGS_QUEUE_REDIS_URL, else the state's ``redis_url``.

    A Cluster state has no default: rq's keys carry no hash tags and its scripts touch several keys.
    """
    if settings.queue_redis_url:
        return settings.queue_redis_url
    if redis_url.startswith(CLUSTER_SCHEME):
        raise SettingsError(
            "invalid settings: TIDINGS_QUEUE_REDIS_URL is required when TIDINGS_REDIS_URL is a"
            " redis+cluster:// URL (rq does not support Redis Cluster: its queues need a Redis of their own)"
        )
    return redis_url


def _explain(message: str) -> str:
    # msgspec says "Object contains unknown field `redis_ulr`" or "... - at `$.batch_size`".
    text = message
    for marker in ("`$.", "field `"):
        if marker in text:
            start = text.index(marker) + len(marker)
            name = text[start : text.index("`", start)]
            text = text.replace(f"`$.{name}`", f"TIDINGS_{name.upper()}").replace(
                f"field `{name}`", f"variable TIDINGS_{name.upper()}"
            )
    return f"invalid settings: {text}"
