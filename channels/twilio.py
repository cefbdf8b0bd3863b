"""Twilio Programmable Messaging: SMS and MMS (``MediaUrl``), with ``StatusCallback`` receipts.

URL: ``twilio://AccountSid:AuthToken@api.twilio.com/?from=+15005550006
&status_callback=https://gateway.example.com/v1/inbound/twilio/receipts``
(or ``messaging_service_sid=MG...`` instead of ``from``).

Twilio has no client-reference field: our id rides on the status callback URL (``?ref=``), so
receipts find the notification. A send that timed out is sent again (looking it up would need
a search by recipient and time): at least once.

Callbacks (status callbacks and the incoming-message webhook) are form posts signed with the auth
token (X-Twilio-Signature over the URL we published, query included, and the sorted fields). The
incoming-message webhook is configured as ``.../v1/inbound/twilio/replies?tenant=T[&brand=B]``:
the tenant is part of what Twilio signs. Both are answered with an empty TwiML document.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import httpx

from channels.base import (
    Ack,
    Callback,
    CallbackAuth,
    ForgedCallback,
    InboundReply,
    MalformedCallback,
    Message,
    Receipt,
    SendResult,
)
from channels.http import HttpAdapter, json_or_none
from channels.urls import ProviderURL

# Permanent whatever the HTTP status says; 20429 (too many requests) is transient.
TRANSIENT_CODES = frozenset({"20429"})
# The MessageStatus values that end a message (delivered or not); the others (queued, sent, ...)
# are progress.
FINAL_STATUSES = {"delivered": True, "undelivered": False, "failed": False, "read": True}
EMPTY_TWIML = Ack(b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>', "text/xml")


# Twilio's webhook signature: base64 HMAC-SHA1 of the URL followed by the sorted POST parameters.
def twilio_signature(auth_token: str, url: str, params: Mapping[str, str | Sequence[str]]) -> str:
    """The X-Twilio-Signature value Twilio sends for a form POST to url with params.

    Each key in sorted order followed by its value; a key given several times contributes each of
    its distinct values, sorted (as Twilio's own validator computes it).
    """
    parts = [url]
    for key in sorted(params):
        value = params[key]
        for one in sorted(set(value)) if not isinstance(value, str) else (value,):
            parts += (key, one)
    digest = hmac.new(auth_token.encode(), "".join(parts).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_variants(url: str) -> list[str]:
    """The URL as given, and with its scheme's default port added or removed: what Twilio signed
    depends on how the webhook URL was written in its console (Twilio's validator accepts both)."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if default is None or not host or parts.port not in (None, default):
        return [url]
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    userinfo = parts.netloc.rpartition("@")[0]
    userinfo = userinfo + "@" if userinfo else ""
    other = f"{userinfo}{host}" if parts.port else f"{userinfo}{host}:{default}"
    return [url, urlunsplit(parts._replace(netloc=other))]


def verify_twilio(
    auth_token: str, url: str, params: Mapping[str, str | Sequence[str]], header: str | None
) -> bool:
    """Constant-time check of X-Twilio-Signature against the URL with and without its default port."""
    if not header:
        return False
    given = header.strip()
    return any(
        hmac.compare_digest(twilio_signature(auth_token, candidate, params), given)
        for candidate in url_variants(url)
    )


def form_fields(callback: Callback) -> dict[str, str]:
    """A callback's form fields (the first value of a repeated key)."""
    return {key: values[0] for key, values in form_values(callback).items()}


def form_values(callback: Callback) -> dict[str, list[str]]:
    """A callback's form fields with every value of a repeated key (what the signature covers)."""
    try:
        return parse_qs(callback.body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise MalformedCallback("malformed_request", "body is not UTF-8") from None


class TwilioMessages(HttpAdapter):
    """``POST /2010-04-01/Accounts/{sid}/Messages.json``."""

    channels: ClassVar[frozenset[str]] = frozenset({"sms", "mms"})
    title_maxlen: ClassVar[int] = 0
    callback_auth: ClassVar[CallbackAuth] = CallbackAuth.SIGNED

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

    # -- callbacks -------------------------------------------------------------------------------
    @classmethod
    def verify_callback(cls, callback: Callback, secret: str) -> None:
        """X-Twilio-Signature, made with the account's auth token (``secret``)."""
        signature = callback.headers.get("x-twilio-signature")
        if not verify_twilio(secret, callback.url, form_values(callback), signature):
            raise ForgedCallback("bad_signature", "X-Twilio-Signature does not verify")

    @classmethod
    def parse_receipts(cls, callback: Callback) -> list[Receipt]:
        """A status callback: a receipt once MessageStatus is final, our reference from ``?ref=``."""
        fields = form_fields(callback)
        status = fields.get("MessageStatus", "")
        if status not in FINAL_STATUSES:
            return []
        channel = "mms" if int(fields.get("NumMedia", "0") or 0) else "sms"
        code = fields.get("ErrorCode") or None
        ref = callback.query.get("ref")
        return [Receipt(fields.get("MessageSid", ""), FINAL_STATUSES[status], code, ref, None, channel)]

    @classmethod
    def parse_replies(cls, callback: Callback) -> list[InboundReply]:
        """An incoming message; the tenant (and brand) from the signed URL's query."""
        fields = form_fields(callback)
        tenant = callback.query.get("tenant") or ""
        if not tenant or "From" not in fields:
            raise MalformedCallback(
                "malformed_reply", "the webhook URL needs ?tenant= and the form needs From and Body"
            )
        return [InboundReply(fields["From"], fields.get("Body", ""), callback.query.get("brand"), tenant)]

    @classmethod
    def receipts_ack(cls, received: int, applied: int) -> Ack:
        """Empty TwiML: nothing to say."""
        return EMPTY_TWIML

    @classmethod
    def replies_ack(cls, outcomes: Sequence[Mapping[str, str]]) -> Ack:
        """Empty TwiML: no answer goes to the member."""
        return EMPTY_TWIML
