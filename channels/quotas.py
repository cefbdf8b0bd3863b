"""Provider limits as data: what a provider refuses late and cryptically, known before the call.

Alibaba answers ``isv.BUSINESS_LIMIT_CONTROL`` when one number has had 50 marketing or notification
messages in 24 hours from one signature and template, or a verification code too often (1 a minute,
5 an hour, 10 a day per number and signature); voice calls are limited per called number (1 a minute,
5 an hour, 20 a day). Each ``Quota`` names the message fields whose values share a count and its
windows; the gateway counts them in Redis, atomically with the decision, just before the call
(``gateway/delivery/quotas.py``). A provider's quotas default to its kind's; ``quotas = []`` in the
providers file turns them off, a list of tables sets its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from channels.base import Message
from compliance.limits import Window

SCOPE_FIELDS = ("brand", "template", "to", "channel")


@dataclass(frozen=True)
class Quota:
    """At most each window's count of messages sharing the ``scope`` fields' values."""

    name: str
    scope: tuple[str, ...]
    windows: tuple[Window, ...]
    categories: frozenset[str] = frozenset()  # empty: every category
    channels: frozenset[str] = frozenset()  # empty: every channel

    def applies(self, m: Message) -> bool:
        """Whether the message counts under this quota."""
        return (not self.categories or m.category in self.categories) and (
            not self.channels or m.channel in self.channels
        )

    def scope_of(self, m: Message) -> str:
        """The values the count is shared by (holds the number: the gateway hashes it for the key)."""
        return "\x1f".join(str(getattr(m, f) or "") for f in self.scope)


_DAY = 86_400
SMS_DAILY = Quota(
    "signature_template_number",
    ("brand", "template", "to"),
    (Window(50, _DAY),),
    frozenset({"marketing", "transactional"}),
    frozenset({"sms", "mms"}),
)
CODES = Quota(
    "verification_number",
    ("brand", "to"),
    (Window(1, 60), Window(5, 3600), Window(10, _DAY)),
    frozenset({"verification"}),
    frozenset({"sms"}),
)
CALLS = Quota(
    "called_number",
    ("to",),
    (Window(1, 60), Window(5, 3600), Window(20, _DAY)),
    channels=frozenset({"voice"}),
)

KIND_QUOTAS: dict[str, tuple[Quota, ...]] = {
    "alibaba": (SMS_DAILY, CODES),
    "alibaba-voice": (CALLS,),
    "tencent-voice": (CALLS,),
}


def kind_quotas(kind: str) -> tuple[Quota, ...]:
    """The quotas a provider of this kind has unless its configuration says otherwise."""
    return KIND_QUOTAS.get(kind, ())
