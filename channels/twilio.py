"""Twilio Programmable Messaging: SMS and MMS (``MediaUrl``), with ``StatusCallback`` receipts.

URL: ``twilio://AccountSid:AuthToken@api.twilio.com/?from=+15005550006
&status_callback=https://gateway.example.com/v1/inbound/twilio/receipts``
(or ``messaging_service_sid=MG...`` instead of ``from``).

Twilio has no client-reference field: our id rides on the status callback URL (``?ref=``), so
receipts find the notification. A send that timed out is sent again (looking it up would need
a search by recipient and time): at least once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import httpx

from channels.base import Message, SendResult
from channels.http import HttpAdapter, json_or_none
from channels.urls import ProviderURL

# Permanent whatever the HTTP status says; 20429 (too many requests) is transient.
TRANSIENT_CODES = frozenset({"20429"})


# Twilio's webhook signature: base64 HMAC-SHA1 of the URL followed by the sorted POST parameters.
def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """The X-Twilio-Signature value Twilio sends for a form POST to url with params."""
    payload = url + "".join(f"{key}{params[key]}" for key in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio(auth_token: str, url: str, params: Mapping[str, str], header: str | None) -> bool:
    """Constant-time check of X-Twilio-Signature."""
    if not header:
        return False
    return hmac.compare_digest(twilio_signature(auth_token, url, params), header.strip())


class TwilioMessages(HttpAdapter):
    """``POST /2010-04-01/Accounts/{sid}/Messages.json``."""

    channels: ClassVar[frozenset[str]] = frozenset({"sms", "mms"})
    title_maxlen: ClassVar[int] = 0

    def __init__(self, url: ProviderURL, *, name: str = "twilio", timeout: float = 5.0, **kw: Any) -> None:
        super().__init__(name, timeout=timeout, **kw)
        if not url.user or not url.secret:
            raise ValueError(f"{url.redacted()}: AccountSid and AuthToken are required")
        if not (url.option("from") or url.option("messaging_service_sid")):
            raise ValueError(f"{url.redacted()}: give from= or messaging_service_sid=")
        self.url = url

    def __repr__(self) -> str:
        return f"TwilioMessages({self.url.redacted()})"

    def form(self, message: Message) -> list[tuple[str, str]]:
        """The form fields of one message."""
        fields = [("To", message.to), ("Body", message.text or "")]
        sender = self.url.option("messaging_service_sid")
        fields.append(("MessagingServiceSid", sender) if sender else ("From", self.url.option("from") or ""))
        fields += [("MediaUrl", m) for m in message.media if message.channel == "mms"]
        callback = self.url.option("status_callback")
        if callback:
            joiner = "&" if "?" in callback else "?"
            fields.append(("StatusCallback", f"{callback}{joiner}ref={quote(message.reference, safe='')}"))
        return fields

    async def send(self, message: Message) -> SendResult:
        """Create the message."""
        path = f"/2010-04-01/Accounts/{quote(self.url.user, safe='')}/Messages.json"
        resp = await self.request(
            "POST",
            f"{self.url.base}{path}",
            content=urlencode(self.form(message)).encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
            auth=(self.url.user, self.url.secret),
        )
        if isinstance(resp, SendResult):
            return resp
        return self.result(resp)

    def result(self, resp: httpx.Response) -> SendResult:
        """201 with a sid is sent; Twilio's error code decides the rest."""
        data = json_or_none(resp)
        if resp.status_code in (200, 201) and isinstance(data, dict) and data.get("sid"):
            return self.sent(str(data["sid"]))
        code = str(data.get("code")) if isinstance(data, dict) and data.get("code") is not None else None
        detail = str(data.get("message", "")) if isinstance(data, dict) else None
        if code in TRANSIENT_CODES:
            return self.retry(code, detail)
        return self.by_status(resp, code, detail)
