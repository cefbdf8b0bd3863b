"""A generic JSON-over-HTTP provider: for in-house gateways and aggregators.

URL: ``webhook://:SECRET@sms-gw.example.com/send?channels=sms,mms`` (``webhook+http://`` for plain
HTTP). Each message is POSTed as JSON with ``X-Tidings-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
"<t>." + body>``; 2xx is sent (``{"id": ...}`` names the provider's message id), 408/429/5xx are
retried, other 4xx refused with the body's ``code``. Our id travels as ``reference``: a receiver
that dedups by it makes resends after a time-out harmless.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

import httpx

from channels.base import Message, SendResult
from channels.http import HttpAdapter, json_or_none
from channels.signing import SIGNATURE_HEADER, sign_timestamped
from channels.urls import ProviderURL

ALL_CHANNELS = frozenset({"sms", "mms", "push", "email", "voice"})


class Webhook(HttpAdapter):
    """POST one JSON message per call."""

    channels: ClassVar[frozenset[str]] = ALL_CHANNELS  # narrowed per instance by ?channels=

    def __init__(self, url: ProviderURL, *, name: str = "webhook", timeout: float = 5.0, **kw: Any) -> None:
        super().__init__(name, timeout=timeout, **kw)
        if not url.secret:
            raise ValueError(f"{url.redacted()}: a signing secret is required (webhook://:SECRET@host/path)")
        chosen = url.option("channels")
        if chosen:
            wanted = frozenset(c.strip() for c in chosen.split(",") if c.strip())
            if not wanted <= ALL_CHANNELS:
                raise ValueError(
                    f"{url.redacted()}: channels must be among {', '.join(sorted(ALL_CHANNELS))}"
                )
            self.channels = wanted  # type: ignore[misc]
        self.url = url

    def __repr__(self) -> str:
        return f"Webhook({self.url.redacted()})"

    async def send(self, message: Message) -> SendResult:
        """POST it, signed."""
        body = json.dumps(
            {
                "reference": message.reference,
                "channel": message.channel,
                "to": message.to,
                "category": message.category,
                "brand": message.brand,
                "text": message.text,
                "subject": message.subject,
                "html": message.html,
                "title": message.title,
                "media": list(message.media),
                "template": message.template,
                "params": dict(message.params),
            },
            ensure_ascii=False,
        ).encode()
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign_timestamped(self.url.secret, body, int(time.time())),
        }
        resp = await self.request(
            "POST", f"{self.url.base}{self.url.path or '/'}", content=body, headers=headers
        )
        if isinstance(resp, SendResult):
            return resp
        return self.result(resp, message)

    def result(self, resp: httpx.Response, message: Message) -> SendResult:
        """2xx is sent; the rest by status."""
        data = json_or_none(resp)
        if 200 <= resp.status_code < 300:
            pmid = data.get("id") if isinstance(data, dict) else None
            return self.sent(str(pmid or message.reference))
        code = str(data["code"]) if isinstance(data, dict) and data.get("code") else None
        detail = str(data.get("message") or data.get("detail") or "") if isinstance(data, dict) else None
        return self.by_status(resp, code, detail)
