"""Clicks on tracked links: who is a person, and what a click records.

Carriers' and phones' link scanners and chat apps' previews fetch links too (DOMAIN.md): they get
the redirect, but only people count. A request is a robot when its user agent says so (the
well-known preview and scanner agents, generic HTTP libraries, or no agent at all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import redis.asyncio as aioredis

from gateway import events, metrics
from gateway.settings import CLUSTER_SCHEME
from gateway.state import keys, scripts
from gateway.state.record import text_of
from gateway.state.scriptpipe import ScriptPipe
from gateway.state.store import Store
from gateway.timeutil import system_clock

CODE = re.compile(r"^[0-9A-Za-z]{8}$")
_ROBOTS = re.compile(
    r"bot\b|bot/|spider|crawl|preview|scanner|facebookexternalhit|whatsapp|telegram|slack|discord|"
    r"skypeuripreview|linkedin|embedly|quora link|vkshare|pinterest|bitlybot|google-safety|"
    r"safebrowsing|headlesschrome|phantomjs|python-requests|python-httpx|aiohttp|go-http-client|"
    r"curl/|wget/|libwww|java/|okhttp/[0-3]\.|barracuda|proofpoint|mimecast|symantec|trendmicro",
    re.IGNORECASE,
)


def is_robot(user_agent: str | None) -> bool:
    """A link-preview robot, a scanner or a bare HTTP library (not a member tapping a link)."""
    return not user_agent or not user_agent.strip() or bool(_ROBOTS.search(user_agent))


@dataclass(frozen=True)
class Click:
    """What one request to a short link found: where to send it, and what it counted as."""

    target: str
    kind: str  # counted | repeat | ignored
    tenant: str
    notification_id: str
    channel: str
    campaign: str


class Clicks:
    """The redirect's one round trip, and the click's timeline event after the answer."""

    def __init__(self, redis: aioredis.Redis, store: Store, repeat_seconds: float, url: str = "") -> None:
        self.redis = redis
        self.store = store
        self.repeat_seconds = repeat_seconds
        # Members tap links: the two scripts go over lean pipelined connections where the URL allows.
        fast = bool(url) and not url.startswith(("rediss://", CLUSTER_SCHEME))  # no Cluster pipe yet
        self._click_pipe = ScriptPipe(url, scripts.CLICK) if fast else None
        self._first_pipe = ScriptPipe(url, scripts.FIRST_EVENT) if fast else None
        self._click = redis.register_script(scripts.CLICK)

    async def aclose(self) -> None:
        """Close the pipelined connections."""
        for pipe in (self._click_pipe, self._first_pipe):
            if pipe is not None:
                await pipe.aclose()

    async def resolve(self, code: str, who: str) -> Click | None:
        """``who``: person, bot or head. None for an unknown code (one Redis call either way)."""
        if not CODE.match(code):
            metrics.LINK_CLICKS.labels("unknown").inc()
            return None
        k, a = [keys.link(code)], [repr(system_clock()), who, repr(self.repeat_seconds)]
        res = await (
            self._click_pipe.call(k, a) if self._click_pipe is not None else self._click(keys=k, args=a)
        )
        if res is None:
            metrics.LINK_CLICKS.labels("unknown").inc()
            return None
        click = Click(*(text_of(v) for v in res))
        metrics.LINK_CLICKS.labels(who if click.kind == "ignored" else click.kind).inc()
        return click

    async def record(self, click: Click) -> bool:
        """A counted click on the notification's timeline (and audit); whether it was its first."""
        at = events.at()
        first = events.encode(events.Clicked(at=at, url=click.target, first=True))
        later = events.encode(events.Clicked(at=at, url=click.target, first=False))
        t, n = click.tenant, click.notification_id
        k = [keys.notification(t, n), keys.events(t, n), keys.audit(t)]
        a = ["clicked_at", first, later, repr(system_clock())]
        if self._first_pipe is not None:
            res = await self._first_pipe.call(k, a)
        else:
            (res,) = await self.store.run_many(scripts.FIRST_EVENT, [(k, a)])
        return int(res) == 1
