"""Channel fallback: the request a failed notification becomes on its next channel, and its timeline note."""

from __future__ import annotations

from typing import Any

from gateway import events
from gateway.models import Status
from gateway.state.store import Claimed
from gateway.timeutil import rfc3339


def fallback_request(c: Claimed) -> dict[str, Any]:
    """The notify request for the next channel of ``c``'s fallback list (same member, content, brand)."""
    r = c.record
    return {
        "to": r.to,
        "channel": r.fallback[0],
        "fallback": r.fallback[1:],
        "category": r.category,
        "brand": r.brand or None,
        "template": r.template or None,
        "params": r.params,
        "content": r.content,
        "expires_at": rfc3339(r.expires_at),
        "metadata": {**r.metadata, "fallback_of": c.id},
    }


def fallback_event(request: dict[str, Any], status: int, body: dict[str, Any]) -> str:
    """The original's timeline event: where it went, or why not."""
    return events.encode(
        events.Fallback(
            at=events.at(),
            channel=request["channel"],
            id=body.get("id"),
            # A refusal answers a problem (its status a number): the timeline says the status word.
            status=body.get("status") if status < 400 else Status.REJECTED,
            reasons=body.get("reasons") or None,
            http_status=status,
        )
    )
