"""Channel fallback: the request a failed notification becomes on its next channel, and its timeline note."""

from __future__ import annotations

from typing import Any

import msgspec

from compliance.reasons import Reason, reason
from gateway import events
from gateway.accept.pipeline import Acceptor
from gateway.errors import Rejected
from gateway.models import NotifyRequest, Status
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
        # Not part of the request: a step's fallback is the same step of the same series.
        "_link": {"series": r.series, "series_step": r.series_step} if r.series else None,
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


async def accept_fallbacks(
    acceptor: Acceptor, tenant: str, requests: list[dict[str, Any]]
) -> list[tuple[int, dict[str, Any]]]:
    """Accept notifications a worker builds for fallback channels: (HTTP status, body) for each."""
    reqs: list[NotifyRequest | Rejected] = []
    links: list[dict[str, str] | None] = []
    for given in requests:
        raw = {k: v for k, v in given.items() if k != "_link"}
        links.append(given.get("_link"))
        try:
            reqs.append(msgspec.convert(raw, NotifyRequest, strict=False))
        except msgspec.ValidationError as exc:
            reqs.append(Rejected(str(raw.get("channel", "")), [reason(Reason.VALIDATION_ERROR, str(exc))]))
    answers = await acceptor.notify_many(tenant, reqs, links)
    return [(a.status, a.body if isinstance(a.body, dict) else msgspec.to_builtins(a.body)) for a in answers]
