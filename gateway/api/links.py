"""``/l/{code}``: the short links messages carry. One Redis call, then the redirect."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, head
from litestar.background_tasks import BackgroundTask
from litestar.params import FromPath

from gateway.api import views
from gateway.api.deps import services
from gateway.engagement.clicks import Click, is_robot
from gateway.errors import NotFound


async def _record(request: Request[Any, Any, Any], click: Click) -> None:
    await services(request.app.state).clicks.record(click)


_RESPONSES = {
    302: views.redirect("To the link's target (header Location)"),
    **views.problems(404, 503, say={404: "No link with that code (not_found)"}),
}


@get("/l/{code:str}", status_code=302, summary="A tracked link: redirect to its target", responses=_RESPONSES)
async def follow_link(request: Request[Any, Any, Any], code: FromPath[str]) -> Response[bytes]:
    """A person's click is counted (written to the timeline after the answer); link-preview robots
    get the redirect uncounted, and a person's second tap within seconds is a repeat."""
    return await _follow(request, code, "bot" if is_robot(request.headers.get("user-agent")) else "person")


@head(
    "/l/{code:str}",
    status_code=302,
    summary="A tracked link, prefetched: the redirect, not counted",
    responses=_RESPONSES,
)
async def prefetch_link(request: Request[Any, Any, Any], code: FromPath[str]) -> Response[None]:
    """Scanners and previews send HEAD: they get the redirect and count as nothing."""
    answer = await _follow(request, code, "head")
    return Response(content=None, status_code=302, headers=dict(answer.headers))


async def _follow(request: Request[Any, Any, Any], code: str, who: str) -> Response[bytes]:
    click = await services(request.app.state).clicks.resolve(code, who)
    if click is None:
        raise NotFound("not_found", "no link with that code")
    headers = {"location": click.target, "cache-control": "no-store", "referrer-policy": "no-referrer"}
    background = BackgroundTask(_record, request, click) if click.kind == "counted" else None
    return Response(content=b"", status_code=302, headers=headers, background=background)


HANDLERS = [follow_link, prefetch_link]
