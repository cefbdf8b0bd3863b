"""The one interface every provider adapter implements, in both directions.

Out: ``Adapter.send`` (and ``BatchAdapter.send_batch``). In: ``Inbound``, the classmethods that
verify a provider's callbacks and read its receipts and replies. A callback reaches an adapter as a
``Callback`` of raw bytes and strings (nothing of the web framework); what it reads comes back as
``Receipt`` and ``InboundReply``, what it refuses as a ``CallbackError``, and what the provider
expects in answer as an ``Ack``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import msgspec

T = TypeVar("T")


class Outcome(StrEnum):
    """What a provider did with one message."""

    SENT = "sent"  # accepted by the provider; a receipt may follow
    RETRY = "retry"  # transient trouble: timeout, 5xx, throttling
    REJECTED = "rejected"  # permanent: bad number, unregistered token, refused content


@dataclass(frozen=True)
class Message:
    """One message as a provider sees it."""

    reference: str  # our notification id, sent as the provider's client reference
    tenant: str
    channel: str
    to: str
    category: str = "marketing"
    brand: str | None = None
    text: str | None = None
    subject: str | None = None
    html: str | None = None
    title: str | None = None
    media: tuple[str, ...] = ()
    # The catalogue template and its params: providers that send only pre-registered templates
    # (Alibaba, Tencent) map them to their own template ids.
    template: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    # Marketing email: the signed one-click unsubscribe link (RFC 8058) the gateway made for it.
    unsubscribe_url: str | None = None
    # A WeChat subscribe message: the mini program's template, the page a tap opens, the values
    # ({"thing1": {"value": "..."}}); ``to`` is the member's openid.
    template_id: str | None = None
    page: str | None = None
    data: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    """The adapter's verdict, never an exception."""

    outcome: Outcome
    provider: str
    provider_message_id: str | None = None
    code: str | None = None
    detail: str | None = None
    retry_after: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Adapter(Protocol):
    """A provider adapter: capabilities as class attributes, one async send."""

    name: str
    channels: ClassVar[frozenset[str]]

    async def send(self, message: Message) -> SendResult:
        """Hand one message to the provider; transport trouble becomes RETRY, not an exception."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class BatchAdapter(Adapter, Protocol):
    """An adapter whose provider takes many messages in one call (Alibaba SendBatchSms, the simulator)."""

    max_batch: ClassVar[int]

    async def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """One result per message, in order; transport trouble makes every result RETRY."""
        ...


# -- the inbound direction -------------------------------------------------------------------------


@dataclass(frozen=True)
class Callback:
    """One provider callback as it arrived: raw bytes and strings only."""

    body: bytes
    url: str  # the public URL the provider called, query included (what Twilio signs)
    query: Mapping[str, str] = field(default_factory=dict)  # the first value of each parameter
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names, the first value of each


@dataclass(frozen=True)
class Receipt:
    """One provider receipt: our reference when the provider echoes it, else its message id."""

    provider_message_id: str
    delivered: bool
    code: str | None = None
    reference: str | None = None  # "tenant:ntf_id"
    at: str | None = None
    channel: str = "sms"


@dataclass(frozen=True)
class InboundReply:
    """One member's reply (MO), as the provider reported it."""

    sender: str  # the member's number, as the provider writes it
    text: str
    brand: str | None = None
    # The tenant a signed callback names (Twilio: ?tenant= in the signed URL; the simulator: the
    # reference it ties the reply to); None when it names none or the URL token proves it.
    tenant: str | None = None
    # The notification the reply answers, when the provider ties it to one (the simulator's sub-port).
    notification_id: str | None = None


@dataclass(frozen=True)
class Ack:
    """The answer a provider expects to its callback (else it may call again)."""

    body: bytes
    media_type: str = "application/json"

    @classmethod
    def json(cls, value: Any) -> Ack:
        """A JSON answer."""
        return cls(msgspec.json.encode(value))


class CallbackAuth(StrEnum):
    """How a provider's callbacks prove where they come from."""

    SIGNED = "signed"  # it signs every call: ``verify_callback`` checks the signature
    URL_TOKEN = "url_token"  # noqa: S105 - a kind of proof, not a secret: the gateway checks the URL token


class CallbackError(ValueError):
    """A callback an adapter refuses; ``code`` is the problem code its caller answers with."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class MalformedCallback(CallbackError):
    """The body is not in the provider's format (400)."""


class ForgedCallback(CallbackError):
    """The signature does not verify (403)."""


@runtime_checkable
class Inbound(Protocol):
    """An adapter's inbound side: a class attribute and classmethods, used on the adapter class itself
    (a callback needs no connection and no configured instance)."""

    @property
    def callback_auth(self) -> CallbackAuth:
        """How its callbacks prove their origin (a class attribute)."""
        ...

    @classmethod
    def verify_callback(cls, callback: Callback, secret: str) -> None:
        """Raise ``ForgedCallback`` unless the provider signed it with ``secret`` (a no-op for URL_TOKEN)."""
        ...

    @classmethod
    def parse_receipts(cls, callback: Callback) -> list[Receipt]:
        """The final receipts of a receipt callback (progress reports dropped); ``MalformedCallback``."""
        ...

    @classmethod
    def parse_replies(cls, callback: Callback) -> list[InboundReply]:
        """The member replies of a reply callback; ``MalformedCallback``."""
        ...

    @classmethod
    def receipts_ack(cls, received: int, applied: int) -> Ack:
        """The answer to a receipt callback: ``received`` read, ``applied`` changed a notification."""
        ...

    @classmethod
    def replies_ack(cls, outcomes: Sequence[Mapping[str, str]]) -> Ack:
        """The answer to a reply callback, given what was done with each reply (kind, action)."""
        ...


@runtime_checkable
class UrlCheck(Protocol):
    """A provider that checks the push URL before using it (WeChat's GET with ``echostr``)."""

    @classmethod
    def url_check_ack(cls, callback: Callback) -> Ack:
        """The answer to a verified URL check; ``MalformedCallback`` when it is not one."""
        ...


def decode_json(body: bytes, kind: type[T], code: str) -> T:
    """A callback's JSON body as ``kind``; ``MalformedCallback(code)`` when it is not."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise MalformedCallback(code, str(exc)) from None


def signature_brand(sign: str | None) -> str | None:
    """The brand an SMS signature names: ``【星耀商城】`` and ``星耀商城`` are both 星耀商城."""
    return (sign or "").strip("【】 ") or None
