"""API keys: stored as SHA-256 hashes in Redis, each with a tenant and scopes."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from gateway import events
from gateway.audit import stream as audit
from gateway.errors import Forbidden, Unauthorized
from gateway.state import keys
from gateway.state.redisdb import is_cluster

SCOPES = ("notify", "optouts", "templates", "audit:read", "admin")
TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant of the key and what it may do."""

    tenant: str
    scopes: frozenset[str]
    key_id: str

    def require(self, scope: str) -> None:
        """Raise 403 unless the key carries the scope (``admin`` carries every scope)."""
        if scope not in self.scopes and "admin" not in self.scopes:
            raise Forbidden("insufficient_scope", f"this API key lacks the {scope!r} scope")


def hash_key(key: str) -> str:
    """The stored form of a key. Keys are 256-bit random, so a fast hash is as strong as a slow one."""
    return hashlib.sha256(key.encode()).hexdigest()


def check_tenant(tenant: str) -> str:
    """Tenants name a Redis hash tag, so they are kept to a safe alphabet."""
    if not TENANT_RE.match(tenant):
        raise ValueError("tenant must match [a-z0-9][a-z0-9_-]{0,62}")
    return tenant


def check_scopes(scopes: list[str]) -> list[str]:
    """Only known scopes."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)} (got {', '.join(unknown) or 'none'})")
    return scopes


async def store_key(redis: aioredis.Redis, key: str, tenant: str, scopes: list[str], name: str = "") -> str:
    """Store (or overwrite) a key; returns its id (a prefix of its hash, safe to show)."""
    digest = hash_key(key)
    # The key, the tenants set and the audit stream are three slots on a Cluster: no MULTI there.
    async with redis.pipeline(transaction=not is_cluster(redis)) as pipe:
        pipe.hset(
            keys.api_key(digest),
            mapping={
                "tenant": check_tenant(tenant),
                "scopes": " ".join(check_scopes(scopes)),
                "name": name,
                "created_at": repr(time.time()),
            },
        )
        pipe.sadd(keys.tenants(), tenant)
        key_id = f"key_{digest[:12]}"
        audit.queue(
            pipe,
            tenant,
            events.encode(
                events.ApiKeyCreated(at=events.at(), key_id=key_id, name=name or None, scopes=scopes)
            ),
        )
        await pipe.execute()
    return key_id


async def revoke_key(redis: aioredis.Redis, key_id: str) -> str | None:
    """Delete the key whose id (``key_`` + the first 12 hex digits of its hash) is given; the tenant it
    acted for, or None when no key has that id. Sessions signed in with it end on their next request."""
    if not re.fullmatch(r"key_[0-9a-f]{12}", key_id):
        return None
    found = [k async for k in redis.scan_iter(match=keys.api_key(key_id[4:]) + "*", count=1000)]
    if len(found) != 1:
        return None
    record = {_text(k): _text(v) for k, v in (await redis.hgetall(found[0])).items()}
    if not record:
        return None
    async with redis.pipeline(transaction=not is_cluster(redis)) as pipe:
        pipe.delete(found[0])
        audit.queue(
            pipe,
            record["tenant"],
            events.encode(
                events.ApiKeyRevoked(at=events.at(), key_id=key_id, name=record.get("name") or None)
            ),
        )
        await pipe.execute()
    return record["tenant"]


def new_key() -> str:
    """A fresh random key."""
    return "tid_" + secrets.token_urlsafe(32)


class Authenticator:
    """Resolves a bearer token to a Principal, with a short in-process cache."""

    def __init__(self, redis: aioredis.Redis, cache_seconds: float) -> None:
        self.redis = redis
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def principal(self, authorization: str | None) -> Principal:
        """Raise 401 for a missing or unknown key."""
        if not authorization:
            raise Unauthorized("unauthorized", "missing Authorization: Bearer <api key> header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 512:
            raise Unauthorized("unauthorized", "expected Authorization: Bearer <api key>")
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit is not None and hit[0] > now:
            found = hit[1]
        else:
            digest = hash_key(token)
            raw = await self.redis.hgetall(keys.api_key(digest))
            found = None
            if raw:
                fields = {_text(k): _text(v) for k, v in raw.items()}
                found = Principal(fields["tenant"], frozenset(fields["scopes"].split()), f"key_{digest[:12]}")
            if len(self._cache) > 10_000:
                self._cache.clear()
            # Keyed by the token itself: it lives only in this process's memory, like the request did.
            self._cache[token] = (now + self.cache_seconds, found)
        if found is None:
            raise Unauthorized("unauthorized", "unknown API key")
        return found


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RateLimiter:
    """Requests per second per API key, in this process: a token bucket per key (GCRA).

    Kept in process memory (a dict look-up, no Redis round trip on the hot path): with N API processes
    a key gets up to N times the rate, so set the rate per process (README).
    """

    def __init__(self, per_second: float, burst: int) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.tolerance = self.interval * max(burst - 1, 0)
        self._tat: dict[str, float] = {}  # key id -> theoretical arrival time of its next request

    def check(self, key_id: str, now: float) -> float:
        """0 when the request may go (and is counted), else the seconds until one may."""
        if not self.interval:
            return 0.0
        tat = max(self._tat.get(key_id, now), now)
        if tat - now > self.tolerance:
            return tat - now - self.tolerance
        if len(self._tat) > 100_000:  # keys come and go: forget the idle ones
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        self._tat[key_id] = tat + self.interval
        return 0.0
