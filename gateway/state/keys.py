"""Every Redis key the gateway uses is built here.

Keys are prefixed ``tid:``. Keys that one Lua script touches together carry the
tenant in a ``{hash tag}`` so they share a slot on Redis Cluster.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from gateway.ids import BUCKETS

PREFIX = "tid:"


def _t(tenant: str) -> str:
    return f"{PREFIX}{{{tenant}}}:"


_HEX = frozenset("0123456789abcdef")


def member_bucket(member: str) -> int:
    """A member's bucket of 1024: the first 10 bits of its member key (lowercase hex, ``Members.of``);
    0 for a key that does not start with three hex digits. A notification or series id made for the
    member carries it (``ids.new_id``)."""
    head = member[:3]
    if len(head) < 3 or not _HEX.issuperset(head):
        return 0
    return int(head, 16) >> 2


def check_buckets(buckets: int) -> int:
    """A tenant's number of tags on a Cluster: a power of two that divides the bucket space (1024),
    or ValueError."""
    if buckets < 1 or buckets > BUCKETS or buckets & (buckets - 1):
        raise ValueError(f"buckets must be a power of two from 1 to {BUCKETS}, not {buckets}")
    return buckets


def bucket_prefix(tenant: str, bucket: int, buckets: int) -> str:
    """The prefix of a bucketed key: ``tid:{tenant:b}:`` with b = bucket mod ``buckets``, and with one
    bucket exactly the tenant's ``tid:{tenant}:`` of today (the plain-Redis layout, unchanged)."""
    if buckets == 1:
        return _t(tenant)
    return f"{PREFIX}{{{tenant}:{bucket % buckets}}}:"


def notification(tenant: str, ntf_id: str) -> str:
    """Hash with one notification's state."""
    return f"{_t(tenant)}ntf:{ntf_id}"


def events(tenant: str, ntf_id: str) -> str:
    """List of one notification's events (JSON), time-ordered."""
    return f"{_t(tenant)}ntf:{ntf_id}:ev"


def accept_keys(tenant: str, ntf_id: str, channel: str) -> tuple[str, str, str, str, str, str]:
    """What every accept writes: ``notification``, ``events``, ``leases``, ``ready``, ``held`` and
    ``audit``, in the order of the accept script's KEYS."""
    return (
        notification(tenant, ntf_id),
        events(tenant, ntf_id),
        leases(tenant),
        ready(tenant, channel),
        held(tenant, channel),
        audit(tenant),
    )


def idempotency(tenant: str, key: str) -> str:
    """Idempotency record of one tenant's key."""
    return f"{_t(tenant)}idem:{key}"


def ready(tenant: str, channel: str) -> str:
    """List of notification ids of one tenant and channel, accepted and waiting for a job."""
    return f"{_t(tenant)}ready:{channel}"


def held(tenant: str, channel: str) -> str:
    """Sorted set: ids of one tenant and channel held until a time (send_at, quiet hours) -> that time."""
    return f"{_t(tenant)}held:{channel}"


def leases(tenant: str) -> str:
    """Sorted set: notification id -> time by which it must have made progress."""
    return f"{_t(tenant)}lease"


def tenants() -> str:
    """Set of tenants that have notifications (the housekeeper walks their leases)."""
    return f"{PREFIX}tenants"


def optouts(tenant: str, member: str) -> str:
    """Hash of one member's opt-outs: field ``brand|channel`` (``*`` = any) -> JSON entry. Never expires."""
    return f"{_t(tenant)}optout:{member}"


def optout_pending(tenant: str, member: str) -> str:
    """Hash of a member's opt-outs written but not yet acknowledged by a replica (503
    optout_not_replicated): field ``brand|channel`` -> ``<until ms>|<1 if the message it answered has
    its unsubscribed event>``. A field is deleted once a replica acknowledged the write."""
    return f"{_t(tenant)}optout-pending:{member}"


def cap(tenant: str, member: str, month: str) -> str:
    """Counter of one member's capped messages in one calendar month of their own zone."""
    return f"{_t(tenant)}cap:{member}:{month}"


def templates(tenant: str) -> str:
    """Hash of a tenant's own templates: name -> JSON document."""
    return f"{_t(tenant)}templates"


def api_key(key_hash: str) -> str:
    """Hash of one API key (looked up by the SHA-256 of the key)."""
    return f"{PREFIX}apikey:{key_hash}"


def dead_letters(tenant: str) -> str:
    """Sorted set of one tenant's notification ids that exhausted their retries, scored by time."""
    return f"{_t(tenant)}dlq"


def provider_message(provider: str, provider_message_id: str) -> str:
    """Maps a provider's message id back to ``tenant|id``."""
    return f"{PREFIX}pmid:{provider}:{provider_message_id}"


def workers() -> str:
    """Sorted set of worker names scored by their last heartbeat."""
    return f"{PREFIX}workers"


def queue_name(channel: str) -> str:
    """The rq queue of one channel."""
    return f"tidings-{channel}"


def provider_breaker(provider: str) -> str:
    """Hash with a provider's circuit breaker (state, failures, until, probe), shared by every worker."""
    return f"{PREFIX}provider:{{{provider}}}:breaker"


def provider_rate(provider: str) -> str:
    """A provider's rate limiter: the theoretical arrival time of its next send (GCRA)."""
    return f"{PREFIX}provider:{{{provider}}}:rate"


def provider_sent(provider: str) -> str:
    """Sorted set: a provider's sends of the last rate window (unique member -> Redis time sent), the
    hard cap beside the spacing of ``provider_rate``."""
    return f"{PREFIX}provider:{{{provider}}}:sent"


def dead_token(tenant: str, token_hash: str) -> str:
    """Marks a push token its provider said is unregistered (SHA-256 of the token)."""
    return f"{_t(tenant)}deadtoken:{token_hash}"


def audit(tenant: str) -> str:
    """Stream of a tenant's audit events, written in the same script as the state change they record."""
    return f"{_t(tenant)}audit"


def audit_head(tenant: str) -> str:
    """The last stored audit event of a tenant (``seq hash``): an anchor outside the audit store."""
    return f"{_t(tenant)}audit-head"


def audit_leader() -> str:
    """Which audit consumer currently moves events into the store (one at a time keeps the order)."""
    return f"{PREFIX}audit-leader"


# -- webhooks (events out) -------------------------------------------------------------------------
def webhook_tenants() -> str:
    """Set of tenants with at least one webhook endpoint (the dispatcher walks their outboxes)."""
    return f"{PREFIX}webhook-tenants"


def webhook_leader() -> str:
    """Which dispatcher currently delivers webhooks (one at a time keeps each lane in order)."""
    return f"{PREFIX}webhook-leader"


def webhooks(tenant: str) -> str:
    """Hash of a tenant's webhook endpoints: id -> the endpoint (JSON, secrets included)."""
    return f"{_t(tenant)}webhooks"


def webhook_outbox(tenant: str) -> str:
    """Stream of a tenant's events for its endpoints, handed over from the audit stream."""
    return f"{_t(tenant)}wh:out"


def webhook_lane(tenant: str, endpoint: str, lane: int) -> str:
    """List of delivery ids waiting for one endpoint, in order, for the members hashed to one lane."""
    return f"{_t(tenant)}wh:q:{endpoint}:{lane}"


def webhook_due(tenant: str) -> str:
    """Sorted set: lane key -> when its first delivery may be tried (now, or after a back-off)."""
    return f"{_t(tenant)}wh:due"


def webhook_delivery(tenant: str, delivery: str) -> str:
    """Hash of one delivery: endpoint, event body, attempts, status, last answer, next try."""
    return f"{_t(tenant)}wh:d:{delivery}"


def webhook_log(tenant: str, endpoint: str) -> str:
    """List of an endpoint's recent delivery ids, newest first (its delivery log)."""
    return f"{_t(tenant)}wh:log:{endpoint}"


# -- reminder series -------------------------------------------------------------------------------
def series(tenant: str, series_id: str) -> str:
    """Hash of one series: definition, member, anchor, params, status and each step's state."""
    return f"{_t(tenant)}ser:{series_id}"


def series_key(tenant: str, key: str) -> str:
    """The series started with a caller's ``key`` (its id): the idempotency of a start."""
    return f"{_t(tenant)}serkey:{key}"


def member_series(tenant: str, member: str) -> str:
    """Set of a member's active series ids (an exit event ends the ones that exit on its type)."""
    return f"{_t(tenant)}mser:{member}"


def series_due(tenant: str) -> str:
    """Sorted set: ``series id|step number`` -> when the step is due (the releaser takes them in batches)."""
    return f"{_t(tenant)}ser:due"


def series_releasing(tenant: str) -> str:
    """Sorted set: steps a releaser took and has not finished -> when another may take them over."""
    return f"{_t(tenant)}ser:releasing"


def series_definitions(tenant: str) -> str:
    """Hash of a tenant's own series definitions: name -> JSON document."""
    return f"{_t(tenant)}ser:defs"


def series_versions(tenant: str) -> str:
    """Hash: definition version -> JSON document; never changed, as series keep the version they began on."""
    return f"{_t(tenant)}ser:defv"


def series_tenants() -> str:
    """Set of tenants with series (the releaser walks their due steps)."""
    return f"{PREFIX}series-tenants"


# -- engagement ------------------------------------------------------------------------------------
@lru_cache(maxsize=4096)  # a tenant runs a few campaigns at a time; every accept of one names it
def _campaign_id(campaign: str) -> str:
    return hashlib.sha256(campaign.encode()).hexdigest()[:20]


def campaign(tenant: str, name: str) -> str:
    """Hash of one campaign's funnel counters (``dim|metric`` -> count), kept as its events are stored."""
    return f"{_t(tenant)}camp:{_campaign_id(name)}"


def member_campaign(tenant: str, member: str, name: str) -> str:
    """List of a member's latest notification ids in one campaign (a conversion's attribution)."""
    return f"{_t(tenant)}mcamp:{member}:{_campaign_id(name)}"


def exclusive_code(tenant: str, code: str) -> str:
    """The notification that carried an exclusive redemption code (param ``code``)."""
    return f"{_t(tenant)}xcode:{code}"


def link(code: str) -> str:
    """Hash of one tracked link: tenant, notification, target, channel, campaign; its click counts."""
    return f"{PREFIX}link:{code}"


# -- console ---------------------------------------------------------------------------------------
def console_session(token_hash: str) -> str:
    """Hash of one console session (tenant, API key hash, CSRF token); the cookie holds the token only."""
    return f"{PREFIX}console:{token_hash}"


def console_failures(client: str) -> str:
    """Counter of wrong keys posted to the console's sign-in from one address in the last minute."""
    return f"{PREFIX}console-fail:{client}"


def verification(tenant: str, member: str, purpose: str) -> str:
    """Hash of a member's current verification for one purpose (a new one replaces it): id, keyed hash
    of the code, status, expiry, attempts. Expires a day after the code."""
    return f"{_t(tenant)}ver:{member}:{purpose}"


def verification_id(tenant: str, ver_id: str) -> str:
    """String: which member and purpose a verification id belongs to (``member|purpose``)."""
    return f"{_t(tenant)}verid:{ver_id}"


def verification_log(tenant: str, scope: str) -> str:
    """Sorted set: verification id -> time sent (ms), for one limit's scope (a number and brand, a
    number block, the tenant): the sliding windows count it."""
    return f"{_t(tenant)}verlog:{scope}"


def provider_quota(provider: str, quota: str, scope: str) -> str:
    """Sorted set: reference -> time sent (ms) of one provider quota's scope (a keyed hash of its
    values: signature, template, number), for its sliding windows."""
    return f"{PREFIX}provider:{{{provider}}}:quota:{quota}:{scope}"


def verification_replaced(tenant: str, member: str, purpose: str) -> str:
    """Hash: the member's verification a new one replaces, kept aside until the new code's message is
    accepted (restored if it cannot go)."""
    return f"{_t(tenant)}ver:{member}:{purpose}:replaced"


# -- WeChat ----------------------------------------------------------------------------------------
def wechat_grants(tenant: str, member: str) -> str:
    """Hash of a member's one-time WeChat subscribe grants: mini-program template id -> how many are left
    (the member is the keyed hash of the openid, never the openid)."""
    return f"{_t(tenant)}wxgrant:{member}"
