"""Tracked links made at accept: each message gets its own short URL per link.

A code is 8 characters of base 62 (about 47 bits from the CSPRNG): short, since a link costs SMS
characters and segments are counted on the short form, and unguessable enough that codes cannot be
walked. What a code points to is written before the notification itself, so no accepted message
ever carries a code that does not resolve.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import redis.asyncio as aioredis

from compliance.reasons import Reason, reason
from gateway.accept.answers import Prepared
from gateway.errors import Rejected
from gateway.state import keys

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CODE_LENGTH = 8
# What a tracked text link looks like: http(s) up to the first space or CJK punctuation.
URL = re.compile(r"https?://[^\s<>\"'，。！？、；：（）【】《》]+")


def new_code() -> str:
    """A fresh short code."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


@dataclass
class LinkMaker:
    """Short links for one message: ``short(url)`` is what its text carries instead of the URL."""

    base: str
    channel: str
    made: list[tuple[str, str]] = field(default_factory=list)  # (code, target)

    def short(self, url: str) -> str:
        """The message's own short URL for ``url`` (the same one if the message links it twice)."""
        url = url.strip()
        if not URL.fullmatch(url):
            raise Rejected(
                self.channel,
                [reason(Reason.VALIDATION_ERROR, f"link({url!r}): only http(s) URLs can be tracked")],
            )
        for code, target in self.made:
            if target == url:
                return f"{self.base}/{code}"
        code = new_code()
        self.made.append((code, url))
        return f"{self.base}/{code}"

    def track(self, text: str) -> str:
        """``text`` with every http(s) URL in it replaced by its short link (``track_links``)."""
        return URL.sub(lambda m: self.short(m.group(0)), text)


async def write_links(redis: aioredis.Redis, ttl: int, prepared: Sequence[Prepared]) -> None:
    """What each tracked link's code points to (tenant, notification, target, channel, campaign),
    written before the notifications that carry them."""
    async with redis.pipeline(transaction=False) as pipe:
        for p in prepared:
            campaign = str(msgspec.json.decode(p.doc).get("metadata", {}).get("campaign") or "")
            for code, target in p.links:
                key = keys.link(code)
                pipe.hset(
                    key,
                    mapping={
                        "t": p.tenant,
                        "n": p.record["id"],
                        "u": target,
                        "c": p.record["channel"],
                        "cmp": campaign,
                    },
                )
                pipe.expire(key, ttl)
        await pipe.execute()
