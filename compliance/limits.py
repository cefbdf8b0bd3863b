"""Sliding-window send limits as data: verification codes per number, per number block and per tenant.

A limit is ``count`` sends in any ``seconds`` long window. The defaults are the Chinese providers'
rules for verification SMS (验证码): 1 a minute, 5 an hour, 10 a day per number and signature
(Alibaba); the block and tenant limits stop SMS pumping (bots requesting codes for a run of numbers
in one premium range). The policy file's ``[verification]`` table overrides them.
"""

from __future__ import annotations

import msgspec


class Window(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """At most ``count`` in any ``seconds``."""

    count: int
    seconds: int


class VerificationPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``[verification]`` table: how codes are made and how often a number may get one."""

    code_length: int = 6
    ttl_seconds: int = 300
    max_attempts: int = 5
    # Per number and brand (the provider's limit per number and signature).
    per_number: list[Window] = msgspec.field(
        default_factory=lambda: [Window(1, 60), Window(5, 3600), Window(10, 86_400)]
    )
    # Per number block: every number sharing all but its last ``block_digits`` digits (a block of
    # 10,000 numbers by default). Pumping walks a premium range; real members are spread over blocks.
    block_digits: int = 4
    per_block: list[Window] = msgspec.field(default_factory=lambda: [Window(20, 600)])
    per_tenant: list[Window] = msgspec.field(default_factory=lambda: [Window(600, 60)])
    # Regions (ISO 3166 codes: CN, HK, ...) codes may go to; empty: any. International premium
    # ranges are where pumped codes earn the most.
    countries: list[str] = []

    def problems(self) -> list[str]:
        """What is wrong with these values (empty: usable)."""
        out = []
        if not 4 <= self.code_length <= 10:
            out.append("code_length must be 4 to 10")
        if not 60 <= self.ttl_seconds <= 3600:
            out.append("ttl_seconds must be 60 to 3600")
        if not 1 <= self.max_attempts <= 20:
            out.append("max_attempts must be 1 to 20")
        if not 2 <= self.block_digits <= 6:
            out.append("block_digits must be 2 to 6")
        for name in ("per_number", "per_block", "per_tenant"):
            windows: list[Window] = getattr(self, name)
            if not 1 <= len(windows) <= 5:
                out.append(f"{name} holds 1 to 5 windows")
            for w in windows:
                if w.count < 1 or not 1 <= w.seconds <= 7 * 86_400:
                    out.append(f"{name}: count >= 1 and seconds 1 to 604800, got {w.count}/{w.seconds}")
        return out


def block_of(e164: str, digits: int) -> str:
    """The number block a number belongs to: all but its last ``digits`` digits."""
    return e164[:-digits] if len(e164) > digits + 4 else e164
