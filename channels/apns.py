"""Apple Push Notification service: HTTP/2 with token (ES256 JWT) authentication.

URL: ``apns://api.push.apple.com/?key_file=/etc/tidings/AuthKey_ABC123.p8&key_id=ABC123
&team_id=DEF456&topic=com.example.loyalty`` (``api.sandbox.push.apple.com`` for development).

The provider token is signed ES256 with the .p8 key and reused: Apple wants it renewed no more
than every 20 minutes and no less than every hour (we renew after 40). A 403
ExpiredProviderToken/InvalidProviderToken renews it once. ``apns-id`` is derived from our id,
so a resend after a time-out carries the same id. BadDeviceToken and Unregistered (410) are
permanent; 429 and 5xx transient. HTTP/2 is negotiated by ALPN over TLS.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

import httpx
import jwt

from channels.base import Message, SendResult
from channels.http import HttpAdapter, json_or_none
from channels.urls import ProviderURL

TOKEN_LIFETIME = 40 * 60
PERMANENT = frozenset(
    {"BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic", "BadTopic", "PayloadTooLarge"}
)
STALE_TOKEN = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})


class ApnsPush(HttpAdapter):
    """``POST /3/device/{token}``."""

    channels: ClassVar[frozenset[str]] = frozenset({"push"})
    title_maxlen: ClassVar[int] = 256

    def __init__(self, url: ProviderURL, *, name: str = "apns", timeout: float = 5.0, **kw: Any) -> None:
        super().__init__(name, timeout=timeout, http2=True, **kw)
        url.require("key_file", "key_id", "team_id", "topic")
        try:
            self.key = Path(url.option("key_file") or "").read_text()
        except OSError as exc:
            raise ValueError(f"{url.redacted()}: cannot read key_file ({type(exc).__name__})") from None
        self.url = url
        self.key_id = url.option("key_id") or ""
        self.team_id = url.option("team_id") or ""
        self.topic = url.option("topic") or ""
        self._token: str | None = None
        self._issued = 0.0
        self._lock = asyncio.Lock()
        self.tokens_made = 0

    def __repr__(self) -> str:
        return f"ApnsPush({self.url.redacted()})"

    async def _provider_token(self, stale: str | None = None) -> str:
        async with self._lock:
            if (
                self._token is not None
                and self._token != stale
                and time.time() - self._issued < TOKEN_LIFETIME
            ):
                return self._token
            self._issued = time.time()
            claims = {"iss": self.team_id, "iat": int(self._issued)}
            self._token = jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.key_id})
            self.tokens_made += 1
            return self._token

    async def send(self, message: Message) -> SendResult:
        """Send; a stale provider token is renewed once."""
        stale: str | None = None
        for _ in range(2):
            token = await self._provider_token(stale)
            resp = await self.request(
                "POST",
                f"{self.url.base}/3/device/{message.to}",
                json=self.payload(message),
                headers={
                    "authorization": f"bearer {token}",
                    "apns-topic": self.topic,
                    "apns-push-type": "alert",
                    "apns-priority": "10",
                    "apns-id": str(uuid.uuid5(uuid.NAMESPACE_URL, message.reference)),
                },
            )
            if isinstance(resp, SendResult):
                return resp
            reason = self._reason(resp)
            if resp.status_code == 403 and reason in STALE_TOKEN and stale is None:
                stale = token
                continue
            return self.result(resp, reason)
        raise AssertionError("unreachable")

    @staticmethod
    def payload(message: Message) -> dict[str, Any]:
        """The alert, and our id beside it."""
        return {
            "aps": {"alert": {"title": message.title or "", "body": message.text or ""}},
            "reference": message.reference,
        }

    @staticmethod
    def _reason(resp: httpx.Response) -> str | None:
        data = json_or_none(resp)
        return str(data["reason"]) if isinstance(data, dict) and data.get("reason") else None

    def result(self, resp: httpx.Response, reason: str | None) -> SendResult:
        """200 is sent (the apns-id names it); Apple's reason decides the rest."""
        if resp.status_code == 200:
            return self.sent(resp.headers.get("apns-id", ""))
        if reason in PERMANENT or resp.status_code == 410:
            return self.rejected(reason or "Unregistered", f"APNs answered {resp.status_code}")
        return self.by_status(resp, reason, f"APNs answered {resp.status_code}")
