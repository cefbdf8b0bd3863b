"""Providers and routes from a TOML file; adapters built from their provider URLs.

[providers.aliyun]
url = "alibaba://${ALIYUN_AK}:${ALIYUN_SECRET}@dysmsapi.aliyuncs.com/?sign_name=星耀商城&template_code=SMS_1000"
timeout = 5.0
rate_per_second = 50
breaker_failures = 5
breaker_cooldown = 30

[[routes.sms]]
provider = "aliyun"
priority = 0
weight = 1
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import msgspec

from channels.registry import KINDS
from channels.routing import Provider, Route, Router
from channels.simulator import SimulatorAdapter
from channels.urls import parse_provider_url


class ProviderSpec(msgspec.Struct, forbid_unknown_fields=True):
    """One ``[providers.NAME]`` table."""

    url: str
    timeout: float = 5.0
    rate_per_second: float | None = None
    rate_headroom: float = 0.2
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0


class RouteSpec(msgspec.Struct, forbid_unknown_fields=True):
    """One entry of ``[[routes.CHANNEL]]``."""

    provider: str
    priority: int = 0
    weight: float = 1.0


class ProvidersFile(msgspec.Struct, forbid_unknown_fields=True):
    """The whole file."""

    providers: dict[str, ProviderSpec]
    routes: dict[str, list[RouteSpec]] = {}


class ProvidersError(ValueError):
    """The providers file is unusable; the message names the place and never a secret."""


def build_provider(
    name: str, spec: ProviderSpec, environ: dict[str, str] | None = None, pool_size: int = 32
) -> Provider:
    """An adapter from its URL, with its limits; ``pool_size`` connections (the send concurrency, so a
    send never waits for a connection after its rate-limit slot)."""
    try:
        url = parse_provider_url(spec.url, environ)
    except ValueError as exc:
        raise ProvidersError(f"providers.{name}.url: {exc}") from None
    cls = KINDS.get(url.kind)
    if cls is None:
        raise ProvidersError(
            f"providers.{name}.url: unknown kind {url.kind!r} (one of {', '.join(sorted(KINDS))})"
        )
    if spec.timeout <= 0 or spec.breaker_failures < 1 or spec.breaker_cooldown <= 0:
        raise ProvidersError(f"providers.{name}: timeout and breaker_cooldown > 0, breaker_failures >= 1")
    if spec.rate_per_second is not None and spec.rate_per_second <= 0:
        raise ProvidersError(f"providers.{name}.rate_per_second must be positive")
    if not 0 <= spec.rate_headroom < 1:
        raise ProvidersError(f"providers.{name}.rate_headroom must be in [0, 1)")
    try:
        adapter = cls(url, name=name, timeout=spec.timeout, pool_size=pool_size)
    except ValueError as exc:
        raise ProvidersError(f"providers.{name}: {exc}") from None
    return Provider(
        name,
        adapter,
        spec.timeout,
        spec.rate_per_second,
        spec.rate_headroom,
        spec.breaker_failures,
        spec.breaker_cooldown,
    )


def load_router(path: str | Path, environ: dict[str, str] | None = None, pool_size: int = 32) -> Router:
    """Read and check the providers file."""
    try:
        raw: Any = tomllib.loads(Path(path).read_text())
        parsed = msgspec.convert(raw, ProvidersFile)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProvidersError(f"{path}: {exc}") from None
    except msgspec.ValidationError as exc:
        raise ProvidersError(f"{path}: {exc}") from None
    providers = {
        name: build_provider(name, spec, environ, pool_size) for name, spec in parsed.providers.items()
    }
    routes = {
        channel: [Route(r.provider, r.priority, r.weight) for r in entries]
        for channel, entries in parsed.routes.items()
    }
    try:
        return Router(providers, routes)
    except ValueError as exc:
        raise ProvidersError(f"{path}: {exc}") from None


def route_names(path: str | Path | None) -> dict[str, list[str]]:
    """Channel -> provider names of a providers file (no adapters built); None: the simulator's."""
    if path is None:
        return {c: ["simulator"] for c in sorted(SimulatorAdapter.channels)}
    return {channel: [r.provider for r in entries] for channel, entries in _parse(path).routes.items()}


def _parse(path: str | Path) -> ProvidersFile:
    try:
        return msgspec.convert(tomllib.loads(Path(path).read_text()), ProvidersFile)
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ProvidersError(f"{path}: {exc}") from None


def provider_limits(path: str | Path | None) -> dict[str, float | None]:
    """Provider name -> its rate limit in messages per second (None: unlimited); no adapters built."""
    if path is None:
        return {"simulator": None}
    return {name: spec.rate_per_second for name, spec in _parse(path).providers.items()}


def simulator_router(base_url: str, secret: str, timeout: float) -> Router:
    """The default without a providers file: the simulator carries every channel."""
    # A dev stand-in: a short cool-down, so a cleared fault shows within seconds.
    sim = Provider(
        "simulator", SimulatorAdapter(base_url, secret, timeout=timeout), timeout, breaker_cooldown=5.0
    )
    return Router({"simulator": sim}, {c: [Route("simulator")] for c in sorted(SimulatorAdapter.channels)})
