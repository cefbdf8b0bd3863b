"""Provider adapters behind one Protocol, and their registry."""

from __future__ import annotations

from collections.abc import Iterable

from channels.base import Adapter, Message, Outcome, SendResult

__all__ = ["Adapter", "Message", "Outcome", "Registry", "SendResult"]


class Registry:
    """Adapters by name, in the order they were registered (first registered = first choice)."""

    def __init__(self, adapters: Iterable[Adapter] = ()) -> None:
        self._adapters: dict[str, Adapter] = {}
        for adapter in adapters:
            self.register(adapter)

    def register(self, adapter: Adapter) -> None:
        """Add an adapter; a second one of the same name is refused."""
        if adapter.name in self._adapters:
            raise ValueError(f"an adapter named {adapter.name!r} is already registered")
        self._adapters[adapter.name] = adapter

    def names(self) -> list[str]:
        """Registered adapter names."""
        return list(self._adapters)

    def get(self, name: str) -> Adapter:
        """The adapter of that name."""
        return self._adapters[name]

    def for_channel(self, channel: str) -> list[Adapter]:
        """Adapters that can carry the channel, in order of preference."""
        return [a for a in self._adapters.values() if channel in a.channels]

    async def aclose(self) -> None:
        """Close every adapter."""
        for adapter in self._adapters.values():
            await adapter.aclose()
