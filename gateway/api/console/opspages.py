"""Operators' pages: a campaign's funnel and verdict, series, dead letters (admin), provider circuits
(admin), and in ``tidings dev`` the simulator's inbox."""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from channels.config import ProvidersError, provider_limits, route_names
from gateway import events
from gateway.api.console.i18n import label
from gateway.api.console.pages import record
from gateway.api.console.render import Refused, form, lang_of, page, signed_in
from gateway.api.console.session import User
from gateway.api.deps import services
from gateway.engagement.report import campaign_counts, report
from gateway.models import Status
from gateway.recipients import mask_address
from gateway.state import keys

PAGE = 50
FUNNEL = ("sent", "delivered", "clicked", "converted", "opted_out", "complaints")


def funnel_bars(totals: dict[str, Any], width: int = 560) -> list[dict[str, Any]]:
    """Bars of the funnel, each as wide as its share of the messages sent (geometry for the SVG)."""
    top = max(int(totals.get("sent", 0) or 0), 1)
    bars = []
    for i, name in enumerate(FUNNEL):
        n = int(totals.get(name, 0) or 0)
        bars.append({"name": name, "n": n, "y": 8 + i * 30, "w": round(width * n / top, 1), "share": n / top})
    return bars


def variant_bars(judged: dict[str, Any] | None, width: int = 420) -> list[dict[str, Any]]:
    """One bar per variant: its success rate, scaled to the best variant's."""
    if not judged:
        return []
    stats = judged.get("variants", {})
    best = max((float(s.get("rate", 0)) for s in stats.values()), default=0.0) or 1.0
    return [
        {"name": v, "y": 8 + i * 30, "w": round(width * float(s.get("rate", 0)) / best, 1), **s}
        for i, (v, s) in enumerate(sorted(stats.items()))
    ]


def _finite(request: Request[Any, Any, Any], user: User, value: float | None) -> float | None:
    """A time cursor from a query: a real number (nan and inf are refused, not sent to Redis)."""
    if value is not None and not math.isfinite(value):
        raise Refused(422, label(lang_of(request), "bad_input"), user)
    return value


@get("/campaigns")
async def campaigns_page(request: Request[Any, Any, Any], name: FromQuery[str | None] = None) -> Template:
    """A campaign's funnel by channel, variant and step, with the experiment verdict drawn."""
    user = await signed_in(request, "audit:read")
    found = None
    if name:
        counts, experiment = await campaign_counts(
            services(request.app.state).store.redis, user.tenant, name[:200]
        )
        found = report(name[:200], counts, experiment) if counts else None
    return page(
        request,
        "campaign.html",
        user,
        name=name or "",
        report=found,
        bars=funnel_bars(found["totals"]) if found else [],
        vbars=variant_bars(found["experiment"]) if found else [],
    )


@get("/series")
async def series_page(request: Request[Any, Any, Any], after: FromQuery[float | None] = None) -> Template:
    """Steps due next, soonest first, each with its series (one series' steps are a click away)."""
    user = await signed_in(request, "notify")
    after = _finite(request, user, after)
    svc = services(request.app.state)
    due: list[Any] = await svc.store.redis.zrangebyscore(
        keys.series_due(user.tenant),
        f"({after!r}" if after is not None else "-inf",
        "+inf",
        start=0,
        num=PAGE,
        withscores=True,
    )
    rows = []
    for member, score in due:
        sid, _, step = (member.decode() if isinstance(member, bytes) else str(member)).partition("|")
        rows.append({"id": sid, "step": step, "due": float(score)})
    return page(request, "series.html", user, rows=rows, more=rows[-1]["due"] if len(rows) == PAGE else None)


@get("/series/{sid:str}")
async def one_series(request: Request[Any, Any, Any], sid: FromPath[str]) -> Template:
    """One series: its definition, status and every step with its notification."""
    user = await signed_in(request, "notify")
    view = await services(request.app.state).series.view(user.tenant, sid[:64]) if sid.isascii() else None
    if view is None:
        raise Refused(404, label(lang_of(request), "not_found"), user)
    return page(request, "one_series.html", user, s=view)


@get("/dead-letters")
async def dead_letters_page(
    request: Request[Any, Any, Any],
    before: FromQuery[float | None] = None,
    replayed: FromQuery[int | None] = None,
) -> Template:
    """Notifications that used up their retries, newest first, a page at a time, with replay."""
    user = await signed_in(request, "admin")
    before = _finite(request, user, before)
    store = services(request.app.state).store
    raw: list[Any] = await store.redis.zrevrangebyscore(
        keys.dead_letters(user.tenant),
        f"({before!r}" if before is not None else "+inf",
        "-inf",
        start=0,
        num=PAGE,
        withscores=True,
    )
    rows = []
    for member, score in raw:
        ntf_id = member.decode() if isinstance(member, bytes) else str(member)
        found = await store.get(user.tenant, ntf_id)
        rec = found[0] if found else None
        rows.append(
            {
                "id": ntf_id,
                "at": float(score),
                "channel": rec.channel if rec else "",
                "error": (rec.error_code if rec else "") or "",
                "provider": (rec.provider if rec else "") or "",
            }
        )
    total = await store.redis.zcard(keys.dead_letters(user.tenant))
    more = rows[-1]["at"] if len(rows) == PAGE else None
    message = label(lang_of(request), "replayed", n=replayed) if replayed is not None else None
    return page(request, "dead_letters.html", user, rows=rows, total=total, more=more, message=message)


@post("/dead-letters/replay", status_code=303)
async def replay(request: Request[Any, Any, Any]) -> Response[Any]:
    """Queue dead letters again with fresh attempts (the workers pick them up within a second)."""
    user = await signed_in(request, "admin")
    fields = await form(request, user)
    store = services(request.app.state).store
    wanted = [fields["id"]] if fields.get("id") else [i for i, _ in await store.dead_letters(user.tenant)]
    done = 0
    for ntf_id in wanted[:1000]:
        now = time.time()
        ev = events.encode(events.Replayed(at=events.at(now), source="console"))
        # Leased until now: the next housekeeping round re-enqueues it, as after a worker crash.
        if await store.replay(user.tenant, ntf_id, ev, now, now) == Status.QUEUED:
            done += 1
    # Provider circuits are shared by every tenant: a tenant's replay leaves them to their own
    # cool-down and probe (an operator closes them for everyone with `tidings dlq replay`).
    await record(request, user, "dlq_replay", target=fields.get("id") or "all", detail=f"{done} replayed")
    return Redirect(f"/console/dead-letters?replayed={done}", status_code=303)


@get("/providers")
async def providers_page(request: Request[Any, Any, Any]) -> Template:
    """Every provider of the routes: its channels, rate limit and circuit (shared by all workers)."""
    user = await signed_in(request, "admin")
    settings = services(request.app.state).settings
    try:
        routes = route_names(settings.providers_path)
        limits = provider_limits(settings.providers_path)
    except ProvidersError as exc:
        raise Refused(503, str(exc), user) from None
    names = sorted({p for ps in routes.values() for p in ps})
    redis = services(request.app.state).store.redis
    rows = []
    for name in names:
        breaker = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in (await redis.hgetall(keys.provider_breaker(name))).items()
        }
        rows.append(
            {
                "name": name,
                "channels": [c for c, ps in sorted(routes.items()) if name in ps],
                "rate": limits.get(name),
                "state": breaker.get("state", "closed"),
                "failures": int(breaker.get("failures", 0) or 0),
                "until": float(breaker["until"]) if breaker.get("until") else None,
            }
        )
    return page(request, "providers.html", user, rows=rows)


@get("/simulator")
async def simulator_page(request: Request[Any, Any, Any]) -> Template:
    """What each phone, inbox and device received from the simulator (``tidings dev`` only)."""
    user = await signed_in(request, "notify")
    settings = services(request.app.state).settings
    if not settings.console_simulator:
        raise Refused(404, label(lang_of(request), "dev_only"), user)
    try:
        async with httpx.AsyncClient(timeout=3) as client:
            answer = await client.get(f"{settings.simulator_url}/messages")
            messages: list[dict[str, Any]] = answer.json() if answer.status_code == 200 else []
    except (httpx.HTTPError, ValueError):
        messages = []
    rows = [
        {
            "at": m.get("received_at"),
            "channel": str(m.get("channel", "")),
            "to": mask_address(str(m.get("to", "")), str(m.get("channel", ""))),
            # A call shows how it ended (ANSWERED, NO_ANSWER) above what it said.
            "subject": m.get("subject") or m.get("title") or (m.get("call") or {}).get("status") or "",
            "text": m.get("text") or "",
            "id": str(m.get("reference", "")).partition(":")[2],
        }
        for m in reversed(messages[-200:])
        if str(m.get("reference", "")).startswith(f"{user.tenant}:")
    ]
    return page(request, "simulator.html", user, rows=rows)


HANDLERS = [
    campaigns_page,
    series_page,
    one_series,
    dead_letters_page,
    replay,
    providers_page,
    simulator_page,
]
