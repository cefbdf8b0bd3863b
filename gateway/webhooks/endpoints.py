"""A tenant's webhook endpoints, kept in Redis beside its other state; every change is audited.

An endpoint is refused when its URL could reach inside the network the gateway runs in (loopback,
link-local such as the cloud metadata address 169.254.169.254, private, reserved), unless the
operator allows it (``TIDINGS_WEBHOOK_ALLOW_PRIVATE``; ``tidings dev`` does, for loopback receivers).
The same check runs again before each delivery, so a name that later resolves inward is not called.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import msgspec
import redis.asyncio as aioredis

from gateway import events
from gateway.audit import stream as audit
from gateway.ids import new_id
from gateway.state import keys
from gateway.timeutil import rfc3339
from gateway.webhooks.signing import new_secret

EVENT_TYPES = (
    "notification.accepted",
    "notification.suppressed",
    "notification.sent",
    "notification.delivered",
    "notification.undelivered",
    "notification.failed",
    "notification.cancelled",
    "optout.created",
    "optout.removed",
    "reply.received",
    "link.clicked",
    "series.started",
    "series.step",
    "series.updated",
    "series.completed",
    "series.exited",
    "series.cancelled",
)
ROTATION_GRACE_SECONDS = 24 * 3600  # an old secret still signs this long after a rotation


class EndpointError(ValueError):
    """An endpoint that cannot be stored as asked; ``code`` and ``field`` say why."""

    def __init__(self, code: str, field: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.field = field
        self.detail = detail


class Secret(msgspec.Struct, frozen=True):
    """A signing secret; a rotated-out one has the time it stops signing."""

    secret: str
    expires_at: float | None = None


class Endpoint(msgspec.Struct, kw_only=True):
    """One endpoint as stored (its secrets included: never answered after creation or rotation)."""

    id: str
    url: str
    events: list[str]
    description: str = ""
    enabled: bool = True
    include_addresses: bool = False
    secrets: list[Secret] = []
    disabled_reason: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    def signing_secrets(self, now: float) -> list[str]:
        """The secrets that sign a delivery now (the newest first)."""
        return [s.secret for s in self.secrets if s.expires_at is None or s.expires_at > now]

    def wants(self, event_type: str) -> bool:
        """Whether this endpoint receives the type."""
        return self.enabled and ("*" in self.events or event_type in self.events)

    def view(self) -> dict[str, Any]:
        """The API's view (no secret)."""
        return {
            "id": self.id,
            "url": self.url,
            "events": self.events,
            "description": self.description,
            "enabled": self.enabled,
            "include_addresses": self.include_addresses,
            "disabled_reason": self.disabled_reason,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
        }


_decode = msgspec.json.Decoder(Endpoint)


def check_events(wanted: list[str]) -> list[str]:
    """The event types asked for, each known (``*`` for all)."""
    if not wanted:
        raise EndpointError("validation_error", "events", "name at least one event type, or *")
    unknown = sorted(set(wanted) - set(EVENT_TYPES) - {"*"})
    if unknown:
        raise EndpointError(
            "validation_error",
            "events",
            f"unknown event type {unknown[0]!r}; known: *, {', '.join(EVENT_TYPES)}",
        )
    return sorted(set(wanted))


def check_url_form(url: str) -> tuple[str, int]:
    """The host and port of an endpoint URL that is well-formed: http(s), a host, no credentials."""
    if len(url) > 2048:
        raise EndpointError("validation_error", "url", "the URL is longer than 2048 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EndpointError("validation_error", "url", f"not a URL: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise EndpointError("validation_error", "url", "the URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise EndpointError("validation_error", "url", "the URL must not carry credentials")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def check_reachable(url: str, allow_private: bool) -> None:
    """Refuse a URL whose host is, or resolves to, an address inside the network (unless allowed)."""
    host, port = check_url_form(url)
    if allow_private:
        return
    try:
        literal = ipaddress.ip_address(host)
        addresses = [literal]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise EndpointError("webhook_url_unresolvable", "url", f"{host} does not resolve") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    inward = [a for a in addresses if not a.is_global or a.is_multicast]
    if inward:
        raise EndpointError(
            "webhook_url_forbidden",
            "url",
            f"{host} is {inward[0]}, inside the network (loopback, link-local, private or reserved)",
        )


class Endpoints:
    """Create, read, change and delete a tenant's endpoints."""

    def __init__(self, redis: aioredis.Redis, allow_private: bool = False) -> None:
        self.redis = redis
        self.allow_private = allow_private

    async def all(self, tenant: str) -> list[Endpoint]:
        """Every endpoint of the tenant, oldest first."""
        raw = await self.redis.hgetall(keys.webhooks(tenant))
        return sorted((_decode.decode(v) for v in raw.values()), key=lambda e: (e.created_at, e.id))

    async def get(self, tenant: str, endpoint_id: str) -> Endpoint | None:
        """One endpoint, or None."""
        raw = await self.redis.hget(keys.webhooks(tenant), endpoint_id)
        return None if raw is None else _decode.decode(raw)

    async def create(
        self,
        tenant: str,
        *,
        url: str,
        events_: list[str],
        description: str = "",
        include_addresses: bool = False,
        by: str = "",
    ) -> Endpoint:
        """A new endpoint with a fresh secret (answered once)."""
        wanted = check_events(events_)
        await check_reachable(url, self.allow_private)
        now = time.time()
        endpoint = Endpoint(
            id=new_id("whk"),
            url=url,
            events=wanted,
            description=description,
            include_addresses=include_addresses,
            secrets=[Secret(new_secret())],
            created_at=now,
            updated_at=now,
        )
        await self._save(tenant, endpoint, "created", by)
        return endpoint

    async def update(
        self, tenant: str, endpoint: Endpoint, changes: dict[str, Any], by: str = ""
    ) -> Endpoint:
        """Change url, events, description, enabled or include_addresses."""
        if "url" in changes:
            await check_reachable(changes["url"], self.allow_private)
            endpoint.url = changes["url"]
        if "events" in changes:
            endpoint.events = check_events(changes["events"])
        if "description" in changes:
            endpoint.description = changes["description"]
        if "include_addresses" in changes:
            endpoint.include_addresses = bool(changes["include_addresses"])
        if "enabled" in changes:
            endpoint.enabled = bool(changes["enabled"])
            endpoint.disabled_reason = None if endpoint.enabled else "disabled through the API"
        endpoint.updated_at = time.time()
        await self._save(tenant, endpoint, "updated", by)
        return endpoint

    async def rotate(self, tenant: str, endpoint: Endpoint, by: str = "") -> str:
        """A new secret; the current ones keep signing for the grace period."""
        now = time.time()
        secret = new_secret()
        kept = [
            Secret(s.secret, s.expires_at if s.expires_at is not None else now + ROTATION_GRACE_SECONDS)
            for s in endpoint.secrets
            if s.expires_at is None or s.expires_at > now
        ]
        endpoint.secrets = [Secret(secret), *kept]
        endpoint.updated_at = now
        await self._save(tenant, endpoint, "secret_rotated", by)
        return secret

    async def disable(self, tenant: str, endpoint_id: str, reason: str) -> None:
        """Stop delivering to an endpoint (410 Gone, or failing for too long)."""
        endpoint = await self.get(tenant, endpoint_id)
        if endpoint is None or not endpoint.enabled:
            return
        endpoint.enabled, endpoint.disabled_reason, endpoint.updated_at = False, reason, time.time()
        await self._save(tenant, endpoint, "disabled", "dispatcher")

    async def delete(self, tenant: str, endpoint: Endpoint, by: str = "") -> None:
        """Remove the endpoint (its waiting deliveries are dropped as they come up)."""
        ev = _changed(endpoint, "deleted", by)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.webhooks(tenant), endpoint.id)
            audit.queue(pipe, tenant, ev)
            await pipe.execute()

    async def _save(self, tenant: str, endpoint: Endpoint, change: str, by: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.webhooks(tenant), endpoint.id, msgspec.json.encode(endpoint))
            audit.queue(pipe, tenant, _changed(endpoint, change, by))
            await pipe.execute()
        await self.redis.sadd(keys.webhook_tenants(), tenant)


def _changed(endpoint: Endpoint, change: str, by: str) -> str:
    """The audit event of a change: which endpoint, what changed, where it points, what it receives."""
    return events.encode(
        events.WebhookChanged(
            at=events.at(),
            endpoint=endpoint.id,
            change=change,
            url=endpoint.url,
            events=endpoint.events,
            enabled=endpoint.enabled,
            include_addresses=endpoint.include_addresses,
            reason=endpoint.disabled_reason,
            by=by or None,
        )
    )
