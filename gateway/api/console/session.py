"""Console sessions: an API key signs in once and is kept only on the server.

The browser holds a random session token in an HttpOnly, SameSite=Strict cookie (Secure behind TLS);
Redis holds, under the token's hash, the tenant, the hash of the API key (never the key) and the
session's CSRF token. Every request looks the key up again, so a deleted key ends its sessions at
once and a key's scopes decide, request by request, what the console shows and allows.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from gateway.api.auth import hash_key
from gateway.state import keys

COOKIE = "tidings_console"
LOGIN_COOKIE = "tidings_console_login"  # the sign-in form's CSRF token, before there is a session
LANG_COOKIE = "tidings_lang"
_REMEMBERED = 50  # members a session keeps the address of (looked up by POST, shown by keyed hash)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of two tokens; a missing one never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True)
class User:
    """Who is signed in: the key's tenant, id and (current) scopes, and the session's CSRF token."""

    token_hash: str
    tenant: str
    key_id: str
    scopes: frozenset[str]
    csrf: str

    def can(self, scope: str) -> bool:
        """Whether the key carries the scope (``admin`` carries every scope)."""
        return scope in self.scopes or "admin" in self.scopes


class Sessions:
    """Start, load and end console sessions in Redis."""

    def __init__(self, redis: aioredis.Redis, max_seconds: float, idle_seconds: float) -> None:
        self.redis = redis
        self.max_seconds = max_seconds
        self.idle_seconds = idle_seconds

    async def start(self, api_key: str) -> tuple[str, User] | None:
        """A new session for a known key: (cookie token, user); None for a key nobody made."""
        digest = hash_key(api_key)
        record = await self.redis.hgetall(keys.api_key(digest))
        if not record:
            return None
        fields = {_text(k): _text(v) for k, v in record.items()}
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = time.time()
        key = keys.console_session(_digest(token))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "tenant": fields["tenant"],
                    "key": digest,
                    "csrf": csrf,
                    "until": repr(now + self.max_seconds),
                },
            )
            pipe.expire(key, int(min(self.idle_seconds, self.max_seconds)) + 1)
            await pipe.execute()
        user = User(
            _digest(token), fields["tenant"], _key_id(digest), frozenset(fields["scopes"].split()), csrf
        )
        return token, user

    async def load(self, token: str | None) -> User | None:
        """The signed-in user of a cookie token, or None (no such session, expired, key gone)."""
        if not token or len(token) > 128:
            return None
        key = keys.console_session(_digest(token))
        raw = await self.redis.hgetall(key)
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        left = float(fields.get("until", "0")) - time.time()
        record = await self.redis.hgetall(keys.api_key(fields["key"])) if left > 0 else {}
        if not record:
            await self.redis.delete(key)
            return None
        await self.redis.expire(key, int(min(self.idle_seconds, left)) + 1)
        scopes = frozenset(_text(record.get(b"scopes", b"")).split())
        return User(_digest(token), fields["tenant"], _key_id(fields["key"]), scopes, fields["csrf"])

    async def end(self, user: User) -> None:
        """Sign out: the session is gone, whatever the browser keeps."""
        await self.redis.delete(keys.console_session(user.token_hash))

    async def remember(self, user: User, member: str, address: str) -> None:
        """Keep a looked-up member's address in the session (pages name members by keyed hash)."""
        key = keys.console_session(user.token_hash)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, f"m:{member}", address)
            pipe.hlen(key)
            _, size = await pipe.execute()
        if size > _REMEMBERED + 8:
            names = [n for n in await self.redis.hkeys(key) if _text(n).startswith("m:")]
            await self.redis.hdel(key, *names[: len(names) - _REMEMBERED])

    async def keep(self, user: User, name: str, value: str) -> None:
        """Keep a result in the session for the page a POST redirects to (post, redirect, get)."""
        await self.redis.hset(keys.console_session(user.token_hash), f"r:{name}", value)

    async def kept(self, user: User, name: str) -> str | None:
        """A result kept by ``keep``."""
        raw = await self.redis.hget(keys.console_session(user.token_hash), f"r:{name}")
        return _text(raw) if raw else None

    async def address_of(self, user: User, member: str) -> str | None:
        """The address this session looked a member up by, if it did."""
        raw = await self.redis.hget(keys.console_session(user.token_hash), f"m:{member}")
        return _text(raw) if raw else None


def _key_id(digest: str) -> str:
    return f"key_{digest[:12]}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
