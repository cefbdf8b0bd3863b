"""Routing: per channel an ordered list of providers (priority, weight), with their limits.

Jasmin's idea without its machinery: routes are tried in priority order, first usable wins;
providers of equal priority share the traffic by weight. Whether a provider is usable now
(circuit breaker) and how fast it may be fed (rate limit) is state shared by every worker, kept
behind the small ``Health`` protocol (Redis in the gateway).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from channels.base import Adapter
from channels.quotas import Quota

Admission = Literal["closed", "probe", "open"]


@dataclass(frozen=True)
class Route:
    """One provider on a channel's route."""

    provider: str
    priority: int = 0
    weight: float = 1.0


@dataclass(frozen=True)
class Provider:
    """An adapter with the limits it is run under."""

    name: str
    adapter: Adapter
    timeout: float = 5.0
    rate_per_second: float | None = None  # the provider's limit; None: unlimited
    # Stay this fraction under the limit: the send moments of a loaded host jitter (two workers on two
    # cores showed 51-55 arrivals in a second at 10% under a 50/s limit); 20% absorbs that.
    rate_headroom: float = 0.2
    breaker_failures: int = 5  # consecutive transient failures that open the circuit
    breaker_cooldown: float = 30.0  # seconds open before one probe is let through
    quotas: tuple[Quota, ...] = ()  # limits per number, signature, template (channels/quotas.py)
    over_quota: Literal["wait", "fail"] = "wait"  # a message over one: held until there is room, or failed

    @property
    def send_interval(self) -> float | None:
        """Seconds between two sends at the limited rate."""
        if not self.rate_per_second:
            return None
        return 1.0 / (self.rate_per_second * (1.0 - self.rate_headroom))

    @property
    def send_window(self) -> tuple[float, int] | None:
        """The hard cap on actual sends: at most (seconds, sends) in any sliding window of that many
        seconds, at the rate send_interval spaces them by; None: unlimited. The window is one second,
        or one interval when that is longer (0.5/s: one send in any 2.2 s)."""
        interval = self.send_interval
        if interval is None:
            return None
        window = max(1.0, interval)
        # A whole number of sends stays whole: 110/s at 10% headroom is 99, not 98.99999999999999.
        return window, max(1, math.floor(window / interval * (1.0 + 1e-9)))


class Health(Protocol):
    """Circuit breakers and rate limits shared by every worker."""

    async def admit(self, provider: Provider) -> tuple[Admission, float]:
        """closed: send; probe: send one message to test a provider after its cool-down; open: skip it
        (with the seconds until a probe may go)."""
        ...

    async def report(self, provider: Provider, ok: int, failed: int) -> str:
        """Record how sends went; returns the circuit state after ("closed", "open" or "half_open")."""
        ...

    async def reserve(self, provider: Provider, n: int, max_wait: float) -> tuple[bool, float]:
        """Reserve n sends under the provider's rate: (True, seconds to wait before sending them), or
        (False, seconds until there is room) when the wait would be longer than max_wait."""
        ...

    async def gate(self, provider: Provider, n: int, max_wait: float) -> tuple[bool, float]:
        """Just before sending n messages, under the provider's send_window: (True, 0.0) when they may
        go now (they are counted as sent); (True, seconds) to wait and ask again; (False, seconds until
        there is room) when the wait would be longer than max_wait."""
        ...


class Router:
    """Candidates for a channel, best first."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        routes: Mapping[str, Sequence[Route]],
        rng: random.Random | None = None,
    ) -> None:
        for channel, entries in routes.items():
            for r in entries:
                if r.provider not in providers:
                    raise ValueError(f"route for {channel} names unknown provider {r.provider!r}")
                if channel not in providers[r.provider].adapter.channels:
                    raise ValueError(f"provider {r.provider!r} cannot carry {channel}")
                if r.weight <= 0:
                    raise ValueError(f"route weight for {r.provider!r} must be positive")
        self.providers = dict(providers)
        self.routes = {c: list(entries) for c, entries in routes.items()}
        self._rng = rng or random.Random()

    def candidates(self, channel: str) -> list[Provider]:
        """Providers for the channel: by priority, equal priorities in a weighted random order."""
        entries = self.routes.get(channel, [])
        # Weighted order without replacement: sort by u^(1/w) (Efraimidis-Spirakis).
        keyed = sorted(entries, key=lambda r: (r.priority, -(self._rng.random() ** (1.0 / r.weight))))
        return [self.providers[r.provider] for r in keyed]

    def channels(self) -> list[str]:
        """Channels with at least one route."""
        return [c for c, entries in self.routes.items() if entries]

    async def aclose(self) -> None:
        """Close every adapter."""
        for p in self.providers.values():
            await p.adapter.aclose()
