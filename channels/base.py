"""The one interface every provider adapter implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable


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
