"""Provider adapters behind one Protocol; which ones run, and in which order, is channels.routing."""

from __future__ import annotations

from channels.base import Adapter, Message, Outcome, SendResult

__all__ = ["Adapter", "Message", "Outcome", "SendResult"]
