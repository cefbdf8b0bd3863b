"""Channel fallback: the request a failed notification becomes on its next channel, and its timeline note."""

from __future__ import annotations

from typing import Any

from gateway import events
from gateway.state.store import Claimed
from gateway.timeutil import rfc3339


def fallback_request(c: Claimed) -> dict[str, Any]:
    """The notify request for the next channel of ``c``'s fallback list (same member, content, brand)."""
    f = c.fields
    chain = list(f["fallback"])
    return {
        "to": f.get("to") or {},
        "channel": chain[0],
        "fallback": chain[1:],
        "category": f.get("category", "marketing"),
        "brand": f.get("brand") or None,
        "template": f.get("template") or None,
        "params": f.get("params") or {},
        "content": f.get("content"),
        "expires_at": rfc3339(f.get("expires_at") or None),
        "metadata": {**(f.get("metadata") or {}), "fallback_of": c.id},
    }


def fallback_event(request: dict[str, Any], status: int, body: dict[str, Any]) -> str:
    """The original's timeline event: where it went, or why not."""
    return events.encode(
        events.Fallback(
            at=events.at(),
            channel=request["channel"],
            id=body.get("id"),
            status=body.get("status"),
            reasons=body.get("reasons") or None,
            http_status=status,
        )
    )
