"""Provider kinds: the adapter class each kind of provider URL builds.

``channels/__init__.py`` registers the built-in adapters, by name and explicitly (no directory
scanning); ``register`` refuses a name that is taken, so two adapters never fight over one kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

from channels.base import Adapter, Inbound
from channels.urls import ProviderURL


class AdapterClass(Protocol):
    """What ``register`` takes: an adapter class built from its provider URL."""

    def __call__(self, url: ProviderURL, /, *, name: str, timeout: float, pool_size: int) -> Adapter:
        """The adapter one provider URL configures."""
        ...


_kinds: dict[str, AdapterClass] = {}
KINDS: Mapping[str, AdapterClass] = MappingProxyType(_kinds)  # read-only: changed by register only


def register(kind: str, cls: AdapterClass) -> None:
    """Make ``kind://...`` provider URLs build ``cls``; a kind already registered is refused."""
    taken = _kinds.get(kind)
    if taken is not None:
        raise ValueError(f"provider kind {kind!r} is already registered (to {_qualname(taken)})")
    _kinds[kind] = cls


def inbound(kind: str) -> Inbound | None:
    """The adapter class that reads ``kind``'s callbacks (receipts, replies); None if it takes none."""
    cls = _kinds.get(kind)
    return cls if isinstance(cls, Inbound) else None


def _qualname(cls: AdapterClass) -> str:
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', repr(cls))}"
