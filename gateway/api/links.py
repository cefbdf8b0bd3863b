"""``/l/{code}``: the short links messages carry. One Redis call, then the redirect.

Members tap these, so they are answered before Litestar routes anything (``ShortLinks``, the ASGI
app the servers run): the code's one Redis script, the 302, and for a person's tap the click's
timeline event after the answer. The Litestar handlers below describe the same answers in the
OpenAPI document and serve them when the app runs without the wrapper.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Litestar, Request, Response, get, head
from litestar.background_tasks import BackgroundTask
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath
from redis.exceptions import RedisError

from gateway.api import views
from gateway.api.deps import services
from gateway.engagement.clicks import Click, is_robot
from gateway.errors import NotFound, problem_document

log = logging.getLogger("tidings.api")


async def _record(request: Request[Any, Any, Any], click: Click) -> None:
    await services(request.app.state).clicks.record(click)


_RESPONSES = {
    302: ResponseSpec(None, description="To the link's target (header Location)", generate_examples=False),
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
_SAFE = ":/?#[]@!$&'()*+,;=%~"
_NOT_FOUND = msgspec.json.encode(problem_document(404, "not_found", "Not found", "no link with that code"))
_UNAVAILABLE = msgspec.json.encode(
    problem_document(
        503, "redis_unavailable", "Service unavailable", "state store unreachable; retry shortly"
    )
)


class ShortLinks:
    """The API's ASGI app: short links first, everything else to the Litestar app."""

    def __init__(self, app: Litestar) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or not scope["path"].startswith("/l/")
        ):
            await self.app(scope, receive, send)  # type: ignore[arg-type]
            return
        head = scope["method"] == "HEAD"
        agent = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"user-agent"), None)
        clicks = services(self.app.state).clicks
        try:
            click = await clicks.resolve(
                scope["path"][3:], "head" if head else "bot" if is_robot(agent) else "person"
            )
        except RedisError:
            await _answer(send, 503, _UNAVAILABLE, head, [(b"retry-after", b"1")])
            return
        if click is None:
            await _answer(send, 404, _NOT_FOUND, head)
            return
        location = quote(click.target, safe=_SAFE).encode()
        await _answer(
            send,
            302,
            b"",
            head,
            [(b"location", location), (b"cache-control", b"no-store"), (b"referrer-policy", b"no-referrer")],
        )
        if click.kind == "counted":
            try:
                await clicks.record(click)
            except RedisError as exc:  # the member got the redirect; the click's event is what is lost
                log.warning("click not recorded (%s)", type(exc).__name__)


async def _answer(
    send: Any, status: int, body: bytes, head: bool, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-length", str(len(body)).encode()), *(extra or [])]
    if body:
        headers.append((b"content-type", b"application/problem+json"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
